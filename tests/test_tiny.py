import json

import pytest
from mindsft.cli import main
from mindsft.convert.safetensors_io import read_header
from mindsft.demo import demo_data
from mindsft.tiny import DEMO_FILE, DEMO_RECORDS, HELDOUT_FILE, TEXT_FILE, make_tiny_model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny") / "model"
    assert main(["make-tiny-model", "--output_dir", str(out), "--seed", "0"]) == 0
    return out


def test_tiny_model_is_an_hf_llama_folder_with_at_least_two_shards(tiny):
    config = json.loads((tiny / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert config["torch_dtype"] == "float32"
    index = json.loads((tiny / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) >= 2
    names = {t.name for shard in shards for t in read_header(tiny / shard)}
    assert names == set(index["weight_map"])
    assert len(names) == 1 + 9 * config["num_hidden_layers"] + 2
    gen = json.loads((tiny / "generation_config.json").read_text())
    assert (gen["bos_token_id"], gen["eos_token_id"]) == (1, 2)


def test_same_seed_gives_byte_identical_files_and_another_seed_differs(tiny, tmp_path):
    again = make_tiny_model(tmp_path / "again", seed=0)
    files = sorted(p.name for p in tiny.iterdir())
    assert files == sorted(p.name for p in again.iterdir())
    for name in files:
        assert (tiny / name).read_bytes() == (again / name).read_bytes(), name
    other = make_tiny_model(tmp_path / "other", seed=1)
    shard = "model-00001-of-00003.safetensors"
    assert (other / shard).read_bytes() != (tiny / shard).read_bytes()


def test_tiny_model_loads_in_transformers_with_its_tokenizer(tiny):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    model = transformers.LlamaForCausalLM.from_pretrained(tiny)
    tok = transformers.LlamaTokenizer.from_pretrained(tiny)
    assert (tok.unk_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2)
    assert len(tok) == 512
    ids = tok("What is the capital of Dringrer?", return_tensors="pt").input_ids
    assert ids[0, 0].item() == 1
    logits = model(ids).logits
    assert logits.shape == (1, ids.shape[1], 512)
    assert torch.isfinite(logits).all()
    # seeded normal(0, 0.02) weights, norms at one
    w = model.model.layers[0].self_attn.q_proj.weight
    assert abs(w.std().item() - 0.02) < 0.002
    assert torch.equal(model.model.norm.weight, torch.ones(64))


def test_tokenizer_follows_llama_conventions_and_covers_the_demo_text(tiny):
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(tiny / "tokenizer.model"))
    assert [sp.id_to_piece(i) for i in range(3)] == ["<unk>", "<s>", "</s>"]
    assert sp.id_to_piece(3) == "<0x00>"  # byte fallback
    digits = ["<0x31>", "<0x32>", "<0x33>", "<0x34>"]  # the demo text has no digits: bytes
    assert sp.encode("1234", out_type=str)[-4:] == digits  # digits split
    text = "What is the main export of Vustha?"
    assert sp.decode(sp.encode(text)) == text
    assert len(sp.encode(text)) < 14  # learned pieces, not bytes
    system = "A chat between a curious user and an artificial intelligence assistant."
    assert len(sp.encode(system)) < 30  # vicuna system prompt (73 bytes): learned pieces
    assert sp.decode(sp.encode("ünïcode ✓")) == "ünïcode ✓"


def test_vocab_larger_than_the_text_supports_is_padded_to_the_exact_size(tmp_path):
    import sentencepiece as spm

    out = make_tiny_model(tmp_path / "m", vocab_size=3000, hidden_size=32, num_layers=1)
    sp = spm.SentencePieceProcessor(model_file=str(out / "tokenizer.model"))
    assert sp.get_piece_size() == 3000
    assert sp.id_to_piece(2999).startswith("<extra_")
    assert json.loads((out / "config.json").read_text())["vocab_size"] == 3000


def test_the_demo_world_is_written_beside_the_model(tiny):
    data = demo_data(0)
    assert json.loads((tiny / DEMO_FILE).read_text()) == data.finetune
    assert len(data.finetune) == DEMO_RECORDS
    assert json.loads((tiny / HELDOUT_FILE).read_text()) == data.heldout
    assert (tiny / TEXT_FILE).read_text() == data.text


def test_bad_shape_flags_fail_with_one_line_and_no_output(tmp_path, capsys):
    out = tmp_path / "m"
    assert main(["make-tiny-model", "--output_dir", str(out), "--num_heads", "3"]) == 2
    assert main(["make-tiny-model", "--output_dir", str(out), "--vocab_size", "100"]) == 2
    assert main(["make-tiny-model", "--output_dir", str(out), "--initializer_range", "-1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and "--num_heads" in err[0] and "--vocab_size" in err[1]
    assert "--initializer_range must be positive" in err[2]
    assert not out.exists()
