"""A plan as a readable table and as JSON (what the workflow's report reads)."""

from mindsft.plan.planner import Plan, Scenario
from mindsft.plan.units import format_size

ASSUMPTIONS = (
    "Counts the tensors of one training step; the framework's own memory (runtime, "
    "compiled graphs, communication buffers) is outside the plan: keep headroom "
    "(MindSpore's context.max_device_memory).",
    "GB, MB and KB are powers of 1024, as MindSpore reads max_device_memory.",
    "Optimizer sharding follows MindSpore's parallel optimizer: the float32 weights, "
    "gradients and Adam states of trained parameters at or above "
    "parallel_optimizer_threshold are split over the devices; the whole weights are "
    "gathered in the compute dtype and kept for the backward pass; frozen weights "
    "(a LoRA base) stay whole.",
)


def _model_line(plan: Plan) -> str:
    cfg, p = plan.verdict.step.config, plan.verdict.breakdown.params
    return (
        f"model: {p.total:,} parameters; hidden {cfg.hidden_size}, {cfg.num_layers} layers, "
        f"{cfg.num_heads} heads ({cfg.n_kv_heads} KV), FFN {cfg.intermediate_size}, "
        f"vocab {cfg.vocab_size}, compute {cfg.compute_dtype}"
    )


def _run_line(plan: Plan) -> str:
    step, p = plan.verdict.step, plan.verdict.breakdown.params
    if step.lora is not None:
        lora = step.lora
        what = (
            f"LoRA rank {lora.lora_rank} on {sum(len(k) for k in step.wrapped.values())} "
            f"Dense layers ({p.lora:,} trainable), dropout {lora.lora_dropout}"
        )
    else:
        what = f"full fine-tuning ({p.total:,} trainable)"
    return (
        f"run: {what}; batch {step.batch_size} x seq {step.seq_length} per device, "
        f"{plan.devices} device(s), accumulation {step.accumulation}, "
        f"recompute {'on' if step.recompute else 'off'}"
    )


def _yes(fits) -> str:
    return "-" if fits is None else ("yes" if fits else "NO")


def _scenario_rows(plan: Plan) -> list:
    step = plan.verdict.step
    head = (
        f"  {'':52s} {'per device':>11s}  {'fits':>4s}  "
        f"{'max batch @ seq ' + str(step.seq_length):>19s}  "
        f"{'max seq @ batch ' + str(step.batch_size):>19s}"
    )
    rows = [head]
    for s in plan.scenarios:
        batch = "-" if s.largest_batch is None else str(s.largest_batch)
        seq = "-" if s.largest_seq is None else str(s.largest_seq)
        rows.append(
            f"  {s.name:52s} {format_size(s.breakdown.total):>11s}  {_yes(s.fits):>4s}  "
            f"{batch:>19s}  {seq:>19s}"
        )
    return rows


def _verdict_line(plan: Plan) -> str:
    v = plan.verdict
    need = format_size(v.breakdown.total)
    if plan.device_memory is None:
        return f"verdict: needs {need} per device (no device memory given: --device_memory)"
    have = format_size(plan.device_memory)
    if v.fits:
        return f"verdict: fits: {need} of {have} per device"
    fixes = [s.name for s in plan.scenarios[1:] if s.fits]
    hint = f"; fits with: {'; '.join(fixes)}" if fixes else ""
    return f"verdict: DOES NOT FIT: needs {need} per device, {have} available{hint}"


def format_plan(plan: Plan) -> str:
    """The plan as lines of text."""
    v = plan.verdict
    b = v.breakdown
    width = max(len(k) for k in b.parts) + 2
    lines = [
        f"memory plan for {plan.source} (backend {v.step.backend.name})",
        _model_line(plan),
        _run_line(plan),
        f"per device at the peak ({b.moment}), {v.name}:",
        *(f"  {k:{width}s}{format_size(n):>11s}" for k, n in b.parts.items()),
        f"  {'total':{width}s}{format_size(b.total):>11s}",
        f"activations: {format_size(b.per_layer)} per layer x {v.step.config.num_layers} layers "
        f"= {format_size(b.activations['without recompute'])} with the shared tensors; "
        f"with recompute {format_size(b.activations['with recompute'])}",
        f"transients: logits and loss {format_size(b.transients['logits and loss'])} "
        f"(end of the forward pass), workspace {format_size(b.transients['workspace'])} "
        "(a layer's backward pass)",
        f"device memory: {'-' if plan.device_memory is None else format_size(plan.device_memory)}",
        *_scenario_rows(plan),
        _verdict_line(plan),
    ]
    if plan.notes:
        lines.append("the YAML asks for, not implemented by mindsft: " + "; ".join(plan.notes))
    lines += [f"assumption: {a}" for a in (v.step.backend.basis, *ASSUMPTIONS)]
    return "\n".join(lines)


def format_short(plan: Plan) -> str:
    """The plan in a few lines, as a training run prints it at start."""
    v = plan.verdict
    b = v.breakdown
    parts = ", ".join(f"{k} {format_size(n)}" for k, n in b.parts.items())
    lines = [
        f"memory plan ({v.step.backend.name}): {_run_line(plan).removeprefix('run: ')}",
        f"memory plan: {format_size(b.total)} per device at the peak ({b.moment}): {parts}",
        f"memory plan: {_verdict_line(plan).removeprefix('verdict: ')}",
    ]
    if plan.notes:
        lines.append("memory plan: the YAML asks for, not implemented: " + "; ".join(plan.notes))
    return "\n".join(lines)


def _scenario_json(s: Scenario) -> dict:
    return {
        "name": s.name,
        "recompute": s.step.recompute,
        "optimizer_sharding": s.step.shard,
        "peak_bytes": s.breakdown.total,
        "peak_moment": s.breakdown.moment,
        "fits": s.fits,
        "largest_batch_size": s.largest_batch,
        "largest_seq_length": s.largest_seq,
    }


def plan_json(plan: Plan) -> dict:
    """The plan as a JSON-ready dict; byte counts are integers."""
    v = plan.verdict
    cfg, b, step = v.step.config, v.breakdown, v.step
    lora = step.lora
    return {
        "config": plan.source,
        "backend": step.backend.name,
        "model": {**cfg.to_dict(), "parameters": b.params.total},
        "run": {
            "batch_size": step.batch_size,
            "seq_length": step.seq_length,
            "devices": plan.devices,
            "gradient_accumulation_steps": step.accumulation,
            "recompute": step.recompute,
            "lora": None
            if lora is None
            else {"rank": lora.lora_rank, "dropout": lora.lora_dropout, "trainable": b.params.lora},
        },
        "device_memory_bytes": plan.device_memory,
        "peak": {"moment": b.moment, "parts": dict(b.parts), "total_bytes": b.total},
        "activations": {
            "per_layer_bytes": b.per_layer,
            "layers": cfg.num_layers,
            "without_recompute_bytes": b.activations["without recompute"],
            "with_recompute_bytes": b.activations["with recompute"],
        },
        "gradients_total_bytes": b.gradients_total,
        "transients_bytes": dict(b.transients),
        "verdict": _scenario_json(v),
        "scenarios": [_scenario_json(s) for s in plan.scenarios],
        "not_implemented": list(plan.notes),
        "assumptions": [step.backend.basis, *ASSUMPTIONS],
    }
