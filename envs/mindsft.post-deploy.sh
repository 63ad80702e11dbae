#!/usr/bin/env bash
# Snakemake runs this inside the freshly created env, from its working directory
# (the repository root, or MINDSFT_ROOT): install the mindsft package itself; the
# env file already holds its dependencies.
set -euo pipefail
python -m pip install --no-deps --no-build-isolation -e "${MINDSFT_ROOT:-.}"
