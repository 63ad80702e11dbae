"""Per-device memory of one mindsft training step, counted from the shapes.

What is counted is what THIS implementation holds (mindsft.models, mindsft.pet,
mindsft.train.step and .optim), not a generic transformer:

- parameters are float32 masters; Dense layers compute in `compute_dtype`, and
  with a 16-bit compute dtype each cast weight is kept for the backward pass;
- gradients are float32 and appear during the backward pass (the output layer's
  first); AdamWeightDecay keeps m and v in float32; LoRA trains only A and B
  (the base is frozen: no base gradient or state);
- a layer keeps, for its backward pass, the tensors the backward of its ops
  reads: the layer input and residual, RMSNorm's float32 input (16-bit compute)
  and normalised input (trained weight), q/k/v after rotary and the attention
  output, the attention probabilities (B, H, T, T) in the compute dtype (3/4 of
  them with the two causal query halves), SwiGLU's three (N, F) tensors, and the
  inputs of the Dense layers whose weights are trained (full) or LoRA-wrapped
  (dropout keeps the mask and the masked input instead);
- the rotary tables (B, T, heads, hd) and the tiled causal masks float32 are
  built once per step and shared by the layers;
- the loss holds float32 logits and their log_softmax (N, V), and the backward
  pass their gradients;
- with recompute (`LlamaForCausalLM.recompute_layers`, MindSpore's recompute pass
  in a compiled step) a layer keeps its input and what the attention core's
  hand-written backward reads (q, k, v, its output and the probabilities: that
  backward is not a gradient node to the pass, so it reads the forward's
  tensors), and one layer's tensors are rebuilt at a time in the backward pass.

The peak is the largest of the step's moments: the end of the forward pass
(every layer's activations, the loss), the end of the backward pass (every
gradient, the first layer's activations, the largest per-layer transient) and,
with recompute, the last layer rebuilt (every layer input and that layer's
activations).

How much a backend keeps beyond what the backward reads is a `Backend` factor:
measured for MindSpore's CPU backend, assumed 1 elsewhere (see BACKENDS). The
counts themselves match the peak of MindSpore's own memory pool on CPU (the
tensors the runtime allocates; MS_DEV_RUNTIME_CONF="memory_statistics:True")."""

import re
from dataclasses import dataclass, field, replace

from mindsft.models.config import LlamaConfig
from mindsft.pet.config import LoraConfig
from mindsft.plan.shapes import ParameterCounts, count_parameters, lora_targets

F32 = 4
HALVES_MIN = 64  # models.llama.HALVES_MIN: causal attention splits in two query halves
_LAYER_PATH = re.compile(r"^model\.layers\.(\d+)\.\w+\.(\w+)$")
RECOMPUTE_HOLDS_CPU = 1.05  # fitted to bench/memory.py's recompute rows (hidden 256-1024)


@dataclass(frozen=True)
class Backend:
    """How much of a step's activations a MindSpore backend keeps, relative to
    the bytes the backward pass reads (the counts in this module)."""

    name: str
    token_factor: float
    """Applied to the per-token tensors (N, D), (N, F), ..."""
    score_factor: float
    """Applied to the attention probabilities and causal masks (B, H, T, T)."""
    basis: str
    """Where the factors come from, for the plan's assumptions."""
    recompute_holds: float | None = None
    """With recompute, the backend holds this multiple of the activations it holds
    without (None: what recompute keeps, as counted)."""


BACKENDS = {
    # bench/memory.py: peak RSS of real CPU fine-tunes (float32; hidden 256-1024,
    # 2 and 4 layers, seq 256-1024, LoRA and full) minus a same-structure tiny
    # run: MindSpore 2.10's CPU backend held 3.9x the per-token bytes counted
    # here (its kernels keep broadcast and transposed copies), the (B, H, T, T)
    # tensors as counted.
    # With recompute in a compiled step, MindSpore's memory pool peaks lower, as
    # counted, but its CPU kernels keep buffers of their own (malloc'd, outside the
    # pool, sized by their tensors) and the rebuilt layers add kernels: the peak
    # RSS of the recompute rows was 1.05x that of the same rows without.
    "CPU": Backend(
        "CPU",
        3.9,
        1.0,
        "CPU factors measured by bench/memory.py on float32 runs "
        "(MindSpore 2.10 keeps 3.9x the per-token activation bytes the backward reads; "
        "with recompute its CPU kernels' own buffers grow by what its memory pool saves: "
        "the peak does not drop)",
        recompute_holds=RECOMPUTE_HOLDS_CPU,
    ),
    "Ascend": Backend(
        "Ascend",
        1.0,
        1.0,
        "assumed: MindSpore's graph memory planning keeps exactly the tensors the "
        "backward pass reads (not measured: no Ascend device here)",
    ),
}


def backend_for(device_target: str) -> Backend:
    """The Backend of a `context.device_target` (GPU and others: Ascend's rule)."""
    return BACKENDS["CPU" if device_target.upper() == "CPU" else "Ascend"]


@dataclass(frozen=True)
class Step:
    """One training step's shape on one device."""

    config: LlamaConfig
    lora: LoraConfig | None = None
    batch_size: int = 1
    seq_length: int = 0
    """0: the config's seq_length."""
    recompute: bool = False
    accumulation: int = 1
    shard: int = 1
    """Optimizer sharding over this many devices (MindSpore's parallel optimizer)."""
    shard_threshold: int = 64 * 1024
    """Parameters below this many bytes are not sharded."""
    backend: Backend = BACKENDS["Ascend"]
    wrapped: dict = field(init=False, compare=False, repr=False)
    """{layer index or 'lm_head': set of LoRA-wrapped Dense kinds}."""

    def __post_init__(self):
        if not self.seq_length:
            object.__setattr__(self, "seq_length", self.config.seq_length)
        wrapped = {}
        for path in lora_targets(self.config, self.lora) if self.lora else ():
            m = _LAYER_PATH.match(path)
            key, kind = (int(m[1]), m[2]) if m else ("lm_head", "lm_head")
            wrapped.setdefault(key, set()).add(kind)
        object.__setattr__(self, "wrapped", wrapped)

    @property
    def tokens(self) -> int:
        return self.batch_size * self.seq_length

    @property
    def compute_bytes(self) -> int:
        return F32 if self.config.compute_dtype == "float32" else 2

    @property
    def dropout(self) -> bool:
        return self.lora is not None and self.lora.lora_dropout > 0.0

    def with_(self, **changes) -> "Step":
        """A copy with some fields changed."""
        return replace(self, **changes)


def score_fraction(seq: int) -> float:
    """Share of the T x T attention scores computed and kept: 3/4 when the model
    splits causal attention into two query halves (even T, T/2 >= HALVES_MIN)."""
    return 0.75 if seq % 2 == 0 and seq // 2 >= HALVES_MIN else 1.0


def _width(cfg: LlamaConfig, kind: str) -> int:
    """Input width of a Dense kind."""
    return cfg.intermediate_size if kind == "w2" else cfg.hidden_size


def _out(cfg: LlamaConfig, kind: str) -> int:
    """Output width of a Dense kind."""
    kv = cfg.n_kv_heads * cfg.head_dim
    widths = {"wk": kv, "wv": kv, "w1": cfg.intermediate_size, "w3": cfg.intermediate_size}
    return widths.get(kind, cfg.vocab_size if kind == "lm_head" else cfg.hidden_size)


def _keeps_input(step: Step, key, kind: str) -> bool:
    """Whether the backward pass reads this Dense layer's input: its weight is
    trained (full fine-tuning), or LoRA's A reads it (LoRA without dropout)."""
    if step.lora is None:
        return True
    return kind in step.wrapped.get(key, ()) and not step.dropout


def layer_tokens(step: Step, layer: int) -> dict:
    """Per-token tensors one decoder layer keeps for its backward pass, in bytes."""
    cfg, n, c = step.config, step.tokens, step.compute_bytes
    d, kv, f = cfg.hidden_size, cfg.n_kv_heads * cfg.head_dim, cfg.intermediate_size
    halves = score_fraction(step.seq_length) < 1.0
    # RMSNorm: a float32 copy of x when computing in 16 bits; x / rms for a trained weight
    norm = n * d * ((F32 if c != F32 else 0) + (c if step.lora is None else 0))
    groups = {  # Dense inputs, shared within a group: (bytes, kinds reading it)
        "wq": (n * d * c, ("wq", "wk", "wv")),
        "wo": (n * d * c, ("wo",)),
        "w1": (n * d * c, ("w1", "w3")),
        "w2": (n * f * c, ("w2",)),
    }
    dense = sum(
        size for size, kinds in groups.values() if any(_keeps_input(step, layer, k) for k in kinds)
    )
    lora = 0
    for kind in step.wrapped.get(layer, ()):
        lora += n * step.lora.lora_rank * c  # A's output, read by B's gradient
        if step.dropout:  # the cast mask and the masked input
            lora += 2 * n * _width(cfg, kind) * c
    return {
        "layer input and residual": 2 * n * d * c,
        "norms": 2 * norm,
        "attention q, k, v, output": n * (2 * d + (3 if halves else 2) * kv) * c,
        "feed-forward": 3 * n * f * c,
        "Dense inputs": dense,
        "LoRA": lora,
    }


def layer_scores(step: Step) -> int:
    """Bytes of the attention probabilities one layer keeps, in the compute dtype."""
    cfg, t = step.config, step.seq_length
    return int(step.batch_size * cfg.num_heads * t * t * score_fraction(t)) * step.compute_bytes


def layer_bytes(step: Step, layer: int) -> int:
    """Activation bytes one layer keeps, as the backend keeps them."""
    tokens = sum(layer_tokens(step, layer).values())
    return int(step.backend.token_factor * tokens + step.backend.score_factor * layer_scores(step))


def recompute_kept(step: Step, layer: int) -> int:
    """Activation bytes a layer keeps with recompute, as the backend keeps them: its
    input, and the attention core's q, k, v, output and probabilities."""
    core = layer_tokens(step, layer)["attention q, k, v, output"]
    tokens = step.tokens * step.config.hidden_size * step.compute_bytes + core
    return int(step.backend.token_factor * tokens + step.backend.score_factor * layer_scores(step))


def shared_bytes(step: Step) -> int:
    """Bytes held for the whole step and shared by the layers: rotary tables,
    causal masks (the model's and the step's tiled copies), the final norm."""
    cfg, n, c, t = step.config, step.tokens, step.compute_bytes, step.seq_length
    kv = cfg.n_kv_heads * cfg.head_dim
    rotary = 2 * n * (cfg.hidden_size + kv) * c
    final = n * cfg.hidden_size * (c + (F32 if c != F32 else 0))
    if _keeps_input(step, "lm_head", "lm_head"):
        final += n * cfg.hidden_size * c
    tiled = step.batch_size * cfg.num_heads * t * t * score_fraction(t) * F32
    model = 1.75 * t * t * F32  # the (T, T) mask and its two halves, built with the model
    b = step.backend
    return int(b.token_factor * (rotary + final) + b.score_factor * tiled + model)


def logits_bytes(step: Step) -> int:
    """The loss's peak: float32 logits (N, V), their log_softmax and, in the
    backward pass, the gradient (plus a 16-bit copy of the logits when computing
    in 16 bits)."""
    n, v, c = step.tokens, step.config.vocab_size, step.compute_bytes
    return 3 * n * v * F32 + (n * v * c if c != F32 else 0)


def workspace_bytes(step: Step) -> int:
    """The largest transient inside one layer's backward pass: float32 scores of
    the larger query block (scores, softmax gradient, the mask's zero gradient)
    or SwiGLU's three (N, F) gradients."""
    cfg, t = step.config, step.seq_length
    block = t // 2 if score_fraction(t) < 1.0 else t
    scores = step.batch_size * cfg.num_heads * block * t * F32
    return max(3 * scores, 3 * step.tokens * cfg.intermediate_size * step.compute_bytes)


@dataclass(frozen=True)
class Gradients:
    """Float32 gradient bytes per device."""

    per_layer: int
    """One decoder layer's."""
    head: int
    """The output layer's and the final norm's (the first to appear)."""
    total: int
    """All of them (the end of the backward pass)."""


def gradients(step: Step, params: ParameterCounts) -> Gradients:
    """The trained parameters' gradients: LoRA's A and B, or every parameter."""
    cfg = step.config
    if step.lora is not None:
        layer = max(
            (
                sum(step.lora.lora_rank * (_width(cfg, k) + _out(cfg, k)) for k in kinds)
                for key, kinds in step.wrapped.items()
                if key != "lm_head"
            ),
            default=0,
        )
        head = sum(
            step.lora.lora_rank * (cfg.hidden_size + cfg.vocab_size)
            for _ in step.wrapped.get("lm_head", ())
        )
        return Gradients(layer * F32, head * F32, params.lora * F32)
    d, kv, f = cfg.hidden_size, cfg.n_kv_heads * cfg.head_dim, cfg.intermediate_size
    layer = (2 * d * d + 2 * kv * d + 3 * d * f + 2 * d) * F32
    head = (0 if cfg.tie_word_embeddings else cfg.vocab_size * d * F32) + d * F32
    total = params.total * F32
    if step.shard > 1:  # reduce-scattered as they appear: each device keeps its slice
        layer, head = layer // step.shard, head // step.shard
        total = _sharded_params(step, params)
    return Gradients(layer, head, total)


def static_parts(step: Step, params: ParameterCounts) -> dict:
    """Bytes held from set-up to the end: weights, optimizer state, LoRA, masks."""
    c = step.compute_bytes
    accumulate = step.accumulation > 1
    trained = params.lora if step.lora is not None else params.total
    parts = {}
    if step.lora is None:
        parts["weights (float32)"] = _sharded_params(step, params)
        parts["optimizer states (Adam m, v)"] = 2 * parts["weights (float32)"]
        if step.shard > 1:  # all-gathered for the forward pass, kept for the backward
            parts[f"gathered weights ({step.config.compute_dtype})"] = params.dense * c
        elif c != F32:
            parts[f"weights cast to {step.config.compute_dtype}"] = params.dense * c
    else:
        parts["weights (float32, frozen)"] = params.total * F32
        if c != F32:
            parts[f"weights cast to {step.config.compute_dtype}"] = params.dense * c
        parts["LoRA A, B + Adam m, v"] = 3 * params.lora * F32
        # bool (N, in) masks: the Parameters, the step's inputs, and on the CPU
        # backend the host's drawn and prefetched NumPy arrays
        copies = 4 if step.backend.name == "CPU" else 2
        parts["LoRA dropout masks"] = copies * step.tokens * params.lora_inputs * step.dropout
    parts["gradient accumulation"] = trained * F32 if accumulate else 0
    return {k: v for k, v in parts.items() if v}


def _sharded_params(step: Step, params: ParameterCounts) -> int:
    """Float32 weight bytes per device: whole, or sliced by the parallel optimizer
    (the matrices; vectors under the threshold stay whole)."""
    if step.shard <= 1:
        return params.total * F32
    matrices = (params.total - params.vectors) * F32
    return matrices // step.shard + params.vectors * F32


@dataclass
class Breakdown:
    """Per-device bytes at the step's peak, by component."""

    parts: dict
    """Component -> bytes at the peak moment; they sum to `total`."""
    moment: str
    """The moment of the step that is the peak."""
    params: ParameterCounts
    per_layer: int
    """Activation bytes the largest layer keeps without recompute."""
    activations: dict
    """{'without recompute': every layer's and the shared tensors (the end of the
    forward pass), 'with recompute': the layer inputs, one rebuilt layer and the
    shared tensors}, in bytes."""
    gradients_total: int
    """Every gradient, as held at the end of the backward pass."""
    transients: dict = field(default_factory=dict)
    """{'logits and loss': bytes, 'workspace': bytes}, whichever moment is the peak."""

    @property
    def total(self) -> int:
        return sum(self.parts.values())


def _moments(step: Step, held: list, grads: Gradients) -> dict:
    """{moment: {component: bytes}} for the candidate peaks of the step."""
    holds = step.backend.recompute_holds
    if step.recompute and holds is not None:  # the backend's measured rule
        moments = _moments(step.with_(recompute=False), held, grads)
        for parts in moments.values():
            parts["activations"] = int(holds * parts["activations"])
        return moments
    shared = shared_bytes(step)
    work = workspace_bytes(step)
    if step.recompute:
        kept = [recompute_kept(step, i) for i in range(len(held))]
        forward = sum(kept) + shared
        moments = {
            "backward pass, last layer rebuilt": {
                "activations": forward + held[-1],
                "gradients (float32)": grads.head + grads.per_layer,
                "workspace": work,
            },
        }
        backward = kept[0] + held[0] + shared
    else:
        forward, backward, moments = sum(held) + shared, held[0] + shared, {}
    moments["end of the forward pass"] = {
        "activations": forward,
        "gradients (float32)": grads.head,
        "logits and loss": logits_bytes(step),
    }
    moments["end of the backward pass"] = {
        "activations": backward,
        "gradients (float32)": grads.total,
        "workspace": work,
    }
    return moments


def plan_step(step: Step) -> Breakdown:
    """The per-device memory breakdown at the step's peak."""
    cfg = step.config
    params = count_parameters(cfg, step.lora)
    grads = gradients(step, params)
    held = [layer_bytes(step, i) for i in range(cfg.num_layers)]
    moments = _moments(step, held, grads)
    moment, peak = max(moments.items(), key=lambda item: sum(item[1].values()))
    parts = static_parts(step, params)
    parts.update(peak)
    activations = {
        "without recompute": sum(held) + shared_bytes(step),
        "with recompute": max(
            parts["activations"]
            for parts in _moments(step.with_(recompute=True), held, grads).values()
        ),
    }
    transients = {"logits and loss": logits_bytes(step), "workspace": workspace_bytes(step)}
    return Breakdown(parts, moment, params, max(held), activations, grads.total, transients)
