"""`mindsft make-tiny-model`: the offline demo model. An HF-format Llama folder
(config.json, sharded safetensors with an index, generation_config.json, a
SentencePiece tokenizer.model trained on the demo's text) plus the demo world of
`mindsft.demo`: `wiki_demo.txt` (facts about made-up countries, to pretrain on),
`alpaca_demo.json` (questions about part of the facts, to fine-tune on) and
`alpaca_demo_heldout.json` (questions about the other facts, to score).
The same arguments give byte-identical files."""

import dataclasses
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mindsft.atomic import atomic_output
from mindsft.cli import str2bool
from mindsft.convert import raw, safetensors_io
from mindsft.convert.llama import expected_shapes
from mindsft.demo import DemoData, demo_data, finetune_record_count
from mindsft.errors import MindsftError

# What make-tiny-model writes beside the model: the demo world (`mindsft.demo`).
DEMO_FILE = "alpaca_demo.json"  # fine-tuning records
HELDOUT_FILE = "alpaca_demo_heldout.json"  # held-out records, answered only by pretraining
TEXT_FILE = "wiki_demo.txt"  # the pretraining text
DEMO_RECORDS = finetune_record_count()  # records in DEMO_FILE


_SIZE = re.compile(r"^(\d+)\s*(B|KB|MB|GB|KIB|MIB|GIB)?$", re.IGNORECASE)
_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}


def _flag(default, meaning: str):
    """A TinySpec field: its default and the flag's help."""
    return dataclasses.field(default=default, metadata={"help": meaning})


def parse_size(text: str) -> int:
    """'256KB', '100MB', '5GB' (decimal, as transformers) or KiB/MiB/GiB -> bytes."""
    m = _SIZE.match(str(text).strip())
    if not m or int(m.group(1)) <= 0:
        raise MindsftError(f"--max_shard_size {text!r}: expected a size such as 256KB or 100MB")
    return int(m.group(1)) * _UNITS[(m.group(2) or "B").upper()]


def tokenizer_lines(data: DemoData) -> list:
    """The texts the demo tokenizer is trained on: the pretraining paragraphs and every
    record laid out as preprocessing lays it out (alpaca prompt in a vicuna_v1.1 turn)."""
    from mindsft.data.alpaca import to_conversations
    from mindsft.data.template import conversation_prompt
    from mindsft.data.wikitext import clean_wikitext, wiki_paragraphs

    lines = wiki_paragraphs(clean_wikitext(data.text))
    for record in to_conversations(data.finetune + data.heldout):
        lines.append(conversation_prompt(record["conversations"]))
    return lines


def train_tokenizer(lines, vocab_size: int) -> bytes:
    """A Llama-style SentencePiece BPE model (unk 0, bos 1, eos 2, no pad, byte
    fallback, digits split) with exactly `vocab_size` pieces: when the text offers
    fewer merges, the rest are UNUSED pieces `<extra_i>` at the end."""
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2

    out = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(lines),
            model_writer=out,
            vocab_size=vocab_size,
            model_type="bpe",
            byte_fallback=True,
            split_digits=True,
            unk_id=0,
            bos_id=1,
            eos_id=2,
            pad_id=-1,
            character_coverage=1.0,
            normalization_rule_name="identity",
            remove_extra_whitespaces=False,
            allow_whitespace_only_pieces=True,
            hard_vocab_limit=False,
            num_threads=1,
            minloglevel=2,
        )
    except RuntimeError as exc:
        raise MindsftError(
            f"--vocab_size {vocab_size}: tokenizer training failed ({exc})"
        ) from None
    model = sentencepiece_model_pb2.ModelProto.FromString(out.getvalue())
    for i in range(vocab_size - len(model.pieces)):
        model.pieces.add(piece=f"<extra_{i}>", score=0.0, type=model.SentencePiece.UNUSED)
    if len(model.pieces) != vocab_size:
        raise MindsftError(f"--vocab_size {vocab_size}: tokenizer has {len(model.pieces)} pieces")
    return model.SerializeToString()


@dataclass
class TinySpec:
    """Shape of the tiny model; each field is a `make-tiny-model` flag."""

    seed: int = _flag(0, "seeds the weights, the tokenizer's training text and the demo records")
    hidden_size: int = _flag(64, "width of the model")
    num_layers: int = _flag(2, "decoder layers")
    num_heads: int = _flag(4, "attention heads")
    num_kv_heads: int = _flag(2, "key/value heads (grouped-query attention when fewer than heads)")
    intermediate_size: int = _flag(176, "width of the SwiGLU feed-forward layer")
    vocab_size: int = _flag(512, "pieces of the SentencePiece tokenizer trained for it")
    tie_word_embeddings: bool = _flag(False, "True: the output layer shares the embedding")
    max_position_embeddings: int = _flag(512, "longest sequence the config allows")
    initializer_range: float = _flag(0.02, "standard deviation of the random matrices")
    max_shard_size: str = _flag("256KB", "largest safetensors shard (256KB, 100MB, 5GB, 1MiB)")


def hf_config(a: TinySpec) -> dict:
    """config.json of the tiny model, in the fields transformers' LlamaConfig writes."""
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": a.vocab_size,
        "hidden_size": a.hidden_size,
        "intermediate_size": a.intermediate_size,
        "num_hidden_layers": a.num_layers,
        "num_attention_heads": a.num_heads,
        "num_key_value_heads": a.num_kv_heads,
        "head_dim": a.hidden_size // a.num_heads,
        "hidden_act": "silu",
        "max_position_embeddings": a.max_position_embeddings,
        "initializer_range": a.initializer_range,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "rope_scaling": None,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "pretraining_tp": 1,
        "use_cache": True,
        "tie_word_embeddings": a.tie_word_embeddings,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "torch_dtype": "float32",
    }


@dataclass
class RandomTensor:
    """A weight drawn when its bytes are asked for: normal(0, std) for matrices,
    ones for norms, from its own seed (seed, index), so only one tensor is ever
    in memory and the same seed gives the same bytes."""

    name: str
    shape: tuple
    seed: tuple
    dtype: str = "F32"
    std: float = 0.02

    def array(self) -> np.ndarray:
        if len(self.shape) == 1:
            return np.ones(self.shape, dtype=np.float32)
        rng = np.random.default_rng(self.seed)
        return rng.standard_normal(self.shape, dtype=np.float32) * np.float32(self.std)

    def chunks(self, size: int = raw.CHUNK_BYTES):
        return raw.ArrayTensor(self.name, self.array(), self.dtype).chunks(size)


def init_weights(config: dict, seed: int) -> list:
    """The tiny model's weights in canonical order, drawn lazily."""
    shapes = expected_shapes(config).items()
    std = config["initializer_range"]
    return [RandomTensor(name, shape, (seed, i), std=std) for i, (name, shape) in enumerate(shapes)]


def make_tiny_model(output_dir, **spec) -> Path:
    """Write the tiny model folder; `spec` holds TinySpec fields."""
    a = TinySpec(**spec)
    for f in dataclasses.fields(TinySpec):
        if f.type in (int, float) and not getattr(a, f.name) > 0 and f.name != "seed":
            raise MindsftError(f"--{f.name} must be positive, got {getattr(a, f.name)}")
    if a.hidden_size % a.num_heads or a.num_heads % a.num_kv_heads:
        raise MindsftError(
            "--hidden_size must divide by --num_heads, and --num_heads by --num_kv_heads"
        )
    if (a.hidden_size // a.num_heads) % 2:
        raise MindsftError("--hidden_size / --num_heads must be even (rotary embeddings)")
    shard_bytes = parse_size(a.max_shard_size)
    demo = demo_data(a.seed)
    tokenizer = train_tokenizer(tokenizer_lines(demo), a.vocab_size)
    config = hf_config(a)
    generation = {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0, "do_sample": False}
    tokenizer_config = {
        "tokenizer_class": "LlamaTokenizer",
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "add_bos_token": True,
        "add_eos_token": False,
        "legacy": True,
        "model_max_length": a.max_position_embeddings,
    }
    with atomic_output(output_dir) as tmp:
        tmp.mkdir()
        safetensors_io.write_sharded(tmp, init_weights(config, a.seed), shard_bytes)
        for name, data in [
            ("config.json", config),
            ("generation_config.json", generation),
            ("tokenizer_config.json", tokenizer_config),
            (DEMO_FILE, demo.finetune),
            (HELDOUT_FILE, demo.heldout),
        ]:
            (tmp / name).write_text(json.dumps(data, indent=2) + "\n")
        (tmp / TEXT_FILE).write_text(demo.text)
        (tmp / "tokenizer.model").write_bytes(tokenizer)
    return Path(output_dir)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "make-tiny-model",
        help="write the offline demo model: HF Llama folder, tokenizer and the demo's data",
        description="Write the offline demo: an HF-format Llama folder (config.json, sharded "
        "safetensors with an index, generation_config.json), a SentencePiece tokenizer.model "
        "trained for it, and the seeded demo world: wiki_demo.txt (facts about made-up "
        "countries, to pretrain on), alpaca_demo.json (questions about part of the facts, "
        "to fine-tune on) and alpaca_demo_heldout.json (questions about the other facts). "
        "The same arguments give byte-identical files.",
    )
    p.add_argument(
        "--output_dir", required=True, help="the folder to write (replaced if it exists)"
    )
    for f in dataclasses.fields(TinySpec):
        kind = str2bool if f.type is bool else f.type
        help_text = f"{f.metadata['help']} (default: %(default)s)"
        p.add_argument(f"--{f.name}", type=kind, default=f.default, help=help_text)
    p.set_defaults(func=_run)


def _run(args) -> None:
    spec = {f.name: getattr(args, f.name) for f in dataclasses.fields(TinySpec)}
    print(f"wrote {make_tiny_model(args.output_dir, **spec)}")
