"""Figures and tables for the Snakemake report (matplotlib, Agg backend)."""

import csv
import html
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from mindsft.atomic import atomic_output
from mindsft.errors import MindsftError
from mindsft.files import read_json, read_text


def read_jsonl(path) -> list:
    """Records of a JSON-lines file; an empty file is an error naming it."""
    rows = [json.loads(line) for line in read_text(path).splitlines() if line.strip()]
    if not rows:
        raise MindsftError(f"{path}: no records")
    return rows


def _save(fig, out) -> None:
    with atomic_output(out) as tmp:
        fig.savefig(tmp, format=Path(out).suffix.lstrip("."), dpi=120, bbox_inches="tight")
    plt.close(fig)


def _write_html(out, title: str, body: str) -> None:
    with atomic_output(out) as tmp:
        Path(tmp).write_text(
            f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
            "</title><style>body{font-family:sans-serif} td,th{padding:2px 8px;"
            "border-bottom:1px solid #ddd;text-align:right} pre{white-space:pre-wrap}"
            f"</style></head><body><h3>{html.escape(title)}</h3>{body}</body></html>\n"
        )


def _table(header: list, rows: list) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def plot_loss(loss_jsonl, out, title: str) -> None:
    """The loss figure of a run's loss.jsonl (`loss_figure`), saved to `out`."""
    rows = read_jsonl(loss_jsonl)
    if not any("loss" in r for r in rows):
        raise MindsftError(f"{loss_jsonl}: no training-step records")
    _save(loss_figure(rows, title), out)


def loss_figure(rows: list, title: str):
    """Training loss per step (and the learning rate on a second axis), with the
    records of evaluation during training (`eval_loss`) as points on the loss axis."""
    train = [r for r in rows if "loss" in r]
    evals = [r for r in rows if "eval_loss" in r]
    steps = [r["step"] for r in train]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, [r["loss"] for r in train], marker=".", label="training loss")
    if evals:
        ax.plot(
            [r["step"] for r in evals],
            [r["eval_loss"] for r in evals],
            marker="o",
            color="tab:red",
            label="eval loss",
        )
        ax.legend(loc="upper right")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(f"{title}: training loss" + (" and eval loss" if evals else ""))
    if all("lr" in r for r in train):
        lr = ax.twinx()
        lr.plot(steps, [r["lr"] for r in train], color="tab:orange", alpha=0.6, label="lr")
        lr.set_ylabel("learning rate", color="tab:orange")
    return fig


def plot_eval(base_json, tuned_json, out, title: str) -> None:
    """Eval loss before and after fine-tuning, perplexity written on the bars."""
    metrics = [read_json(p) for p in (base_json, tuned_json)]
    fig, ax = plt.subplots(figsize=(4.5, 3.5))
    bars = ax.bar(
        ["base", "fine-tuned"], [m["loss"] for m in metrics], color=["tab:gray", "tab:blue"]
    )
    for bar, m in zip(bars, metrics, strict=True):
        ax.annotate(
            f"ppl {m['perplexity']:.2f}",
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="bottom",
        )
    ax.set_ylabel("eval loss (held-out split)")
    ax.set_title(f"{title}: {metrics[1].get('tokens', '?')} eval tokens")
    _save(fig, out)


def samples_html(samples_json, out, title: str) -> None:
    """The sample records and the fine-tuned model's greedy answers."""
    samples = read_json(samples_json, expect=list)
    body = "".join(
        f"<h4>{html.escape(s['instruction'])}</h4>"
        + (f"<p><i>input:</i> {html.escape(s['input'])}</p>" if s.get("input") else "")
        + f"<pre>{html.escape(s['completion']) or '(empty answer)'}</pre>"
        for s in samples
    )
    _write_html(out, f"{title}: sample generations", body or "<p>no prompts configured</p>")


def em_html(base_json, tuned_json, out, title: str) -> None:
    """Exact match and F1 before (the base) and after fine-tuning (`evaluate
    --metric em_f1` files), and every held-out question with its reference and
    both answers."""
    base, tuned = read_json(base_json), read_json(tuned_json)
    scores = _table(
        ["model", "exact match %", "F1 %", "records"],
        [
            [name, f"{m['exact_match']:.1f}", f"{m['f1']:.1f}", m["records"]]
            for name, m in (("before (base)", base), (f"after ({title})", tuned))
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


def stats_html(stats_files: list, out) -> None:
    """One row per MindRecord: rows, tokens, trained tokens, truncated, masked."""
    stats = [(p, read_json(p)) for p in stats_files]
    keys = list(dict.fromkeys(k for _, s in stats for k in s if not isinstance(s[k], dict)))
    rows = [
        [
            Path(p).parent.parent.name
            + "/"
            + Path(p).parent.name
            + "/"
            + Path(p).name.removesuffix(".mindrecord.stats.json")
        ]
        + [s.get(k, "") for k in keys]
        for p, s in stats
    ]
    _write_html(out, "MindRecord statistics", _table(["dataset/split/model_seq", *keys], rows))


def read_benchmark(path) -> dict:
    """Snakemake's benchmark TSV (first repeat): seconds, max_rss (MB), ..."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    if not rows:
        raise MindsftError(f"{path}: empty benchmark file")
    return rows[0]


def benchmarks_report(bench_files: list, table_out, plot_out) -> None:
    """Wall time and peak RSS per stage: an HTML table and a bar chart."""
    stages = []
    for path in bench_files:
        b = read_benchmark(path)
        name = f"{Path(path).parent.name}/{Path(path).stem}"
        rss = b.get("max_rss", "NA")
        stages.append(
            (
                name,
                float(b["s"]),
                float(rss) if rss not in ("NA", "-") else 0.0,
                b.get("cpu_time", ""),
            )
        )
    header = ["stage", "wall s", "peak RSS MB", "cpu s"]
    rows = [[n, f"{s:.2f}", f"{m:.0f}", c] for n, s, m, c in stages]
    _write_html(table_out, "Runtime and peak memory per stage", _table(header, rows))
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(10, 0.35 * len(stages) + 1.5), sharey=True)
    names = [s[0] for s in stages]
    ax_t.barh(names, [s[1] for s in stages])
    ax_t.set_xlabel("wall time (s)")
    ax_m.barh(names, [s[2] for s in stages], color="tab:green")
    ax_m.set_xlabel("peak RSS (MB)")
    ax_t.invert_yaxis()
    _save(fig, plot_out)


def plan_html(plan: dict, out, title: str) -> None:
    """A memory plan (`plan_json`): the peak's breakdown, the scenarios and the verdict."""
    verdict, memory = plan["verdict"], plan["device_memory_bytes"]
    parts = [[k, _mib(v)] for k, v in plan["peak"]["parts"].items()]
    parts.append(["total", _mib(plan["peak"]["total_bytes"])])
    scenarios = [
        [
            s["name"],
            _mib(s["peak_bytes"]),
            "-" if s["fits"] is None else ("yes" if s["fits"] else "NO"),
            "-" if s["largest_batch_size"] is None else s["largest_batch_size"],
            "-" if s["largest_seq_length"] is None else s["largest_seq_length"],
        ]
        for s in plan["scenarios"]
    ]
    run = plan["run"]
    body = (
        f"<p>backend {html.escape(plan['backend'])}; batch {run['batch_size']} x seq "
        f"{run['seq_length']} per device, {run['devices']} device(s), recompute "
        f"{'on' if run['recompute'] else 'off'}; device memory "
        f"{'not declared' if memory is None else _mib(memory)}</p>"
        f"<h4>per device at the peak ({html.escape(plan['peak']['moment'])})</h4>"
        + _table(["component", "MiB"], parts)
        + "<h4>scenarios</h4>"
        + _table(["", "MiB per device", "fits", "max batch", "max seq"], scenarios)
        + f"<p>verdict: {html.escape(verdict['name'])}: {_mib(verdict['peak_bytes'])} MiB"
        + ("" if verdict["fits"] is None else (" fits" if verdict["fits"] else " DOES NOT FIT"))
        + "</p>"
        + "".join(f"<p><i>{html.escape(a)}</i></p>" for a in plan["assumptions"])
    )
    _write_html(out, f"{title}: memory plan", body)


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f}"
