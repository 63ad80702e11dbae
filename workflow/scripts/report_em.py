"""Rule report_em: exact match and F1 before and after fine-tuning, and every
held-out question with its reference and both answers."""

import html

from mindsft.files import read_json
from mindsft.workflow.logs import log_to
from mindsft.workflow.plots import _table, _write_html

smk = snakemake  # noqa: F821 (injected by Snakemake)


def em_html(base_json, tuned_json, out, title: str) -> None:
    base, tuned = read_json(base_json), read_json(tuned_json)
    scores = _table(
        ["model", "exact match %", "F1 %", "records"],
        [
            [name, f"{m['exact_match']:.1f}", f"{m['f1']:.1f}", m["records"]]
            for name, m in (("before (base)", base), ("after (" + title + ")", tuned))
        ],
    )
    rows = [
        [
            b["instruction"],
            b["reference"],
            b["answer"],
            t["answer"],
            "yes" if t["exact_match"] else "",
        ]
        for b, t in zip(base["answers"], tuned["answers"], strict=True)
    ]
    header = ["question", "reference", "answer before", "answer after", "exact after"]
    body = (
        f"<p>records: {html.escape(str(tuned.get('dataset', '')))}</p>{scores}"
        f"<h4>answers</h4>{_table(header, rows)}"
    )
    _write_html(out, f"{title}: exact match on held-out questions", body)


with log_to(smk.log[0]):
    em_html(smk.input.base, smk.input.tuned, smk.output[0], title=smk.wildcards.run)
