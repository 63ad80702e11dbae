"""The jobs behind a set of files, found the way Snakemake finds them: each file
is matched against the rules' outputs, and the matching rule's input, expanded
with the wildcards of that match, is followed upstream. The one place that reads
Snakemake's rule objects (`Rule.output`, `get_wildcards`, `expand_input`,
`expand_benchmark`); tests/workflow pins what it relies on."""

from mindsft.errors import MindsftError


def producer(rules, path: str):
    """(rule, wildcards) of the one rule whose output `path` is; None for a file
    no rule makes (a source); an error when several rules could make it."""
    found = [rule for rule in rules if any(out.match(path) for out in rule.output)]
    if not found:
        return None
    if len(found) > 1:
        names = ", ".join(rule.name for rule in found)
        raise MindsftError(f"{path}: made by more than one rule ({names})")
    return found[0], found[0].get_wildcards(path)


def upstream_benchmarks(rules, targets) -> list:
    """The `benchmark:` file of every job that makes `targets` or what they depend
    on, each once, upstream jobs first. Rules without `benchmark:` add none."""
    files, seen = [], set()

    def visit(path):
        found = producer(rules, str(path))
        if found is None:
            return
        rule, wildcards = found
        job = (rule.name, tuple(sorted(wildcards.items())))
        if job in seen:
            return
        seen.add(job)
        for dependency in rule.expand_input(wildcards)[0]:
            visit(dependency)
        benchmark = rule.expand_benchmark(wildcards)
        if benchmark is not None:
            files.append(str(benchmark))

    for target in targets:
        visit(target)
    return files
