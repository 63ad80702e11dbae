"""What the Snakemake workflow calls: config checks, the resolved finetune YAML,
provenance (sha256 manifest), data fetch/split, msrun launch, report plots.

Importing this package must stay cheap (no MindSpore): the Snakefile imports it."""
