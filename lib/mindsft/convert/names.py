"""HF Llama parameter names <-> MindFormers parameter names, as data.

`{}` stands for the layer index. `None` marks HF keys skipped on purpose
(rotary buffers HF older versions saved). The MindSpore model in
`mindsft.models` uses the MindFormers names directly, so a converted
checkpoint loads into it (and into MindFormers) unchanged.
"""

import re

from mindsft.errors import MindsftError

HF_TO_MS = {
    "model.embed_tokens.weight": "model.tok_embeddings.embedding_weight",
    "model.layers.{}.self_attn.q_proj.weight": "model.layers.{}.attention.wq.weight",
    "model.layers.{}.self_attn.k_proj.weight": "model.layers.{}.attention.wk.weight",
    "model.layers.{}.self_attn.v_proj.weight": "model.layers.{}.attention.wv.weight",
    "model.layers.{}.self_attn.o_proj.weight": "model.layers.{}.attention.wo.weight",
    "model.layers.{}.self_attn.rotary_emb.inv_freq": None,
    "model.layers.{}.mlp.gate_proj.weight": "model.layers.{}.feed_forward.w1.weight",
    "model.layers.{}.mlp.down_proj.weight": "model.layers.{}.feed_forward.w2.weight",
    "model.layers.{}.mlp.up_proj.weight": "model.layers.{}.feed_forward.w3.weight",
    "model.layers.{}.input_layernorm.weight": "model.layers.{}.attention_norm.weight",
    "model.layers.{}.post_attention_layernorm.weight": "model.layers.{}.ffn_norm.weight",
    "model.norm.weight": "model.norm_out.weight",
    "lm_head.weight": "lm_head.weight",
}

MS_TO_HF = {ms: hf for hf, ms in HF_TO_MS.items() if ms is not None}

# what the names of a Llama checkpoint's weights start with (optimizer state, step
# counters and data position do not)
MODEL_PREFIXES = ("model.", "lm_head.")

_LAYER = re.compile(r"\.(\d+)\.")


def _map(key: str, table: dict, what: str):
    """Look `key` up in `table`, abstracting the first layer index to `{}`."""
    match = _LAYER.search(key)
    if match:
        abstract = key[: match.start()] + ".{}." + key[match.end() :]
        if abstract in table:
            target = table[abstract]
            return None if target is None else target.format(match.group(1))
    if key in table:
        return table[key]
    raise MindsftError(f"unknown {what} parameter name {key!r}")


def hf_to_ms(key: str):
    """MindFormers name for an HF Llama key, or None for a key skipped on purpose."""
    return _map(key, HF_TO_MS, "HF Llama")


def ms_to_hf(key: str) -> str:
    """HF Llama name for a MindFormers key."""
    return _map(key, MS_TO_HF, "MindFormers Llama")
