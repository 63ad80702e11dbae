"""load_weights: what a checkpoint may and may not hold."""

import mindspore as ms
import numpy as np
import pytest
from mindsft.errors import MindsftError
from mindsft.models.config import LlamaConfig
from mindsft.models.llama import LlamaForCausalLM
from mindsft.models.loading import load_weights

CONFIG = LlamaConfig(
    vocab_size=40,
    hidden_size=32,
    num_layers=1,
    num_heads=4,
    n_kv_heads=2,
    intermediate_size=48,
    seq_length=16,
)


def save(path, params: dict):
    ms.save_checkpoint([{"name": n, "data": ms.Tensor(a)} for n, a in params.items()], str(path))
    return path


@pytest.fixture
def weights():
    ms.set_seed(1)
    return {n: p.asnumpy() for n, p in LlamaForCausalLM(CONFIG).parameters_dict().items()}


def test_training_state_is_ignored_and_half_precision_is_widened(tmp_path, weights):
    stored = {n: a.astype(np.float16) for n, a in weights.items()}
    stored["adam_m.model.norm_out.weight"] = np.ones(32, np.float32)
    stored["global_step"] = np.array([7], np.int32)
    model = LlamaForCausalLM(CONFIG)
    load_weights(model, save(tmp_path / "m.ckpt", stored))
    got = model.parameters_dict()["model.layers.0.attention.wk.weight"]
    assert got.dtype == ms.float32
    np.testing.assert_array_equal(
        got.asnumpy(), weights["model.layers.0.attention.wk.weight"].astype(np.float16)
    )


def test_unmerged_lora_weights_are_refused(tmp_path, weights):
    stored = {**weights, "model.layers.0.attention.wq.lora_a": np.zeros((8, 32), np.float32)}
    with pytest.raises(MindsftError, match="unmerged LoRA.*wq.lora_a"):
        load_weights(LlamaForCausalLM(CONFIG), save(tmp_path / "lora.ckpt", stored))


def test_a_tensor_of_the_wrong_shape_is_named(tmp_path, weights):
    stored = {**weights, "model.layers.0.feed_forward.w2.weight": np.zeros((32, 40), np.float32)}
    with pytest.raises(
        MindsftError, match=r"feed_forward.w2.weight has shape \(32, 40\).*\(32, 48\)"
    ):
        load_weights(LlamaForCausalLM(CONFIG), save(tmp_path / "shape.ckpt", stored))


def test_unreadable_or_absent_checkpoint_is_one_line(tmp_path):
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    for name in ("junk.ckpt", "absent.ckpt"):
        with pytest.raises(MindsftError, match=name) as err:
            load_weights(LlamaForCausalLM(CONFIG), tmp_path / name)
        assert "\n" not in str(err.value)
