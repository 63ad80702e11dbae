"""The owner of a run's checkpoint folder: names parsed once, listing in step
order, the steps every rank holds, keep-last-N, and atomic saves that carry the
data position."""

import mindspore as ms
import numpy as np
import pytest
from mindsft.convert.ckpt import CkptWriter
from mindsft.errors import MindsftError
from mindsft.train.checkpoint import (
    CRC_LEN,
    MISMATCH,
    NO_TRAILER,
    SIGNATURE,
    CheckpointFile,
    NonFiniteTensor,
    RunCheckpoints,
    position_tensors,
    read_position,
    read_signature,
    signature_tensor,
    verify,
)


def touch(ckpts, rank, *positions):
    for epoch, step in positions:
        path = ckpts.file(rank, epoch, step)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


def test_names_parse_into_prefix_rank_epoch_and_step():
    found = CheckpointFile.parse("out/checkpoint/rank_1/llama_7b_lora_rank_1-2_30.ckpt")
    assert (found.prefix, found.rank, found.epoch, found.step) == ("llama_7b_lora", 1, 2, 30)
    assert found.position == (2, 30)
    assert CheckpointFile.parse("model.ckpt") is None
    assert CheckpointFile.parse("tiny_rank_0-1_2.ckpt.tmp") is None


def test_files_are_the_ranks_own_in_epoch_then_step_order(tmp_path):
    ckpts = RunCheckpoints(tmp_path, "tiny")
    touch(ckpts, 0, (1, 10), (2, 1), (1, 9))
    (ckpts.rank_dir(0) / "tiny_rank_1-1_3.ckpt").write_bytes(b"")  # another rank's name
    (ckpts.rank_dir(0) / "notes.txt").write_text("")
    assert [f.position for f in ckpts.files(0)] == [(1, 9), (1, 10), (2, 1)]
    assert ckpts.file(0, 2, 1) == tmp_path / "checkpoint" / "rank_0" / "tiny_rank_0-2_1.ckpt"
    assert ckpts.newest(0).path == ckpts.file(0, 2, 1)
    assert ckpts.files(5) == [] and ckpts.newest(5) is None
    with pytest.raises(ValueError, match="needs a prefix"):
        RunCheckpoints(tmp_path).file(0, 1, 1)


def test_resume_takes_the_newest_step_every_rank_with_a_folder_holds(tmp_path):
    ckpts = RunCheckpoints(tmp_path, "tiny")
    touch(ckpts, 0, (1, 2), (1, 4), (1, 6))
    touch(ckpts, 1, (1, 2), (1, 4))
    (tmp_path / "checkpoint" / "strategy").mkdir()
    assert ckpts.ranks() == [0, 1]
    assert ckpts.common_steps(range(2)) == {(1, 2), (1, 4)}
    assert ckpts.newest_common(0, range(2)).path == ckpts.file(0, 1, 4)
    assert ckpts.newest_common(0, range(3)).path == ckpts.file(0, 1, 4)  # rank 2: no folder
    assert ckpts.newest_common(0, [0]).path == ckpts.file(0, 1, 6)
    assert RunCheckpoints(tmp_path / "none").newest_common(0, range(2)) is None


def test_prune_keeps_the_newest_n_of_a_rank(tmp_path):
    ckpts = RunCheckpoints(tmp_path, "tiny")
    touch(ckpts, 0, (1, 2), (1, 4), (2, 2), (1, 6))
    touch(ckpts, 1, (1, 2))
    ckpts.prune(0, 0)  # 0: keep all
    assert len(ckpts.files(0)) == 4
    ckpts.prune(0, 2)
    assert [f.position for f in ckpts.files(0)] == [(1, 6), (2, 2)]
    assert [f.position for f in ckpts.files(1)] == [(1, 2)]


def test_save_writes_the_tensors_and_position_atomically_and_prunes(tmp_path):
    ckpts = RunCheckpoints(tmp_path, "tiny")
    for step in (1, 2, 3):
        tensors = {"w": ms.Tensor(np.full(3, step, np.float32)), "global_step": ms.Tensor(step)}
        tensors.update(position_tensors(0, step))
        path = ckpts.save(1, 1, step, tensors, keep_max=2)
    assert path == ckpts.file(1, 1, 3)
    assert [f.step for f in ckpts.files(1)] == [2, 3]
    assert sorted(p.name for p in ckpts.rank_dir(1).iterdir()) == [
        "tiny_rank_1-1_2.ckpt",
        "tiny_rank_1-1_3.ckpt",
    ]  # no temporary file left
    stored = ms.load_checkpoint(str(path))
    assert np.array_equal(stored["w"].asnumpy(), np.full(3, 3, np.float32))
    assert read_position(stored, path) == (0, 3, 3)
    del stored["step_num"]
    with pytest.raises(MindsftError, match="not a mindsft training checkpoint .no step_num"):
        read_position(stored, path)


def test_holding_gives_the_run_and_prefix_of_a_file_in_the_layout(tmp_path):
    ckpts = RunCheckpoints(tmp_path / "run", "llama_7b")
    touch(ckpts, 1, (2, 5))
    owner, found = RunCheckpoints.holding(ckpts.file(1, 2, 5))
    assert owner.root == ckpts.root and owner.prefix == "llama_7b"
    assert (found.rank, found.position) == (1, (2, 5))
    assert RunCheckpoints.holding(tmp_path / "llama_7b_rank_1-2_5.ckpt") == (None, None)
    assert RunCheckpoints.holding(tmp_path / "model.ckpt") == (None, None)


def test_the_checksum_trailer_is_mindspores_and_catches_bit_rot_and_truncation(tmp_path):
    ckpts = RunCheckpoints(tmp_path, "tiny")
    tensors = {"w": np.arange(4096, dtype=np.float32), "global_step": np.array(3, np.int32)}
    path = ckpts.save(0, 1, 3, tensors, keep_max=0)
    assert verify(path) is None
    stored = ms.load_checkpoint(str(path), crc_check=True)  # MindSpore checks it too
    assert np.array_equal(stored["w"].asnumpy(), tensors["w"])
    data = bytearray(path.read_bytes())
    rotten = bytearray(data)
    rotten[len(data) // 2 : len(data) // 2 + 16] = b"\xff" * 16
    path.write_bytes(bytes(rotten))
    assert verify(path) == MISMATCH
    path.write_bytes(bytes(data[:-100]))
    assert verify(path) == NO_TRAILER
    assert verify(path, required=False).startswith("cut short or corrupt (truncated")
    assert verify(tmp_path / "none.ckpt").startswith("unreadable (No such file")


def test_without_required_a_checkpoint_with_no_trailer_passes_unless_it_is_mindsfts(tmp_path):
    foreign = tmp_path / "mindformers.ckpt"  # what MindFormers writes: no trailer
    with CkptWriter(foreign) as out:
        out.write("model.norm_out.weight", np.ones(4, np.float32))
    assert verify(foreign) == NO_TRAILER and verify(foreign, required=False) is None
    ours = RunCheckpoints(tmp_path, "tiny").save(
        0, 1, 1, {"w": np.ones(4, np.float32), SIGNATURE: signature_tensor({})}, keep_max=0
    )
    ours.write_bytes(ours.read_bytes()[:-CRC_LEN])  # cut exactly before its trailer
    assert verify(ours, required=False) == NO_TRAILER  # its signature, written first, says so


def test_a_save_holding_a_non_finite_tensor_writes_nothing(tmp_path):
    ckpts = RunCheckpoints(tmp_path, "tiny")
    tensors = {"ok": np.ones(3, np.float32), "bad": np.array([1.0, np.inf], np.float32)}
    with pytest.raises(NonFiniteTensor, match="bad holds NaN or infinite values; not written"):
        ckpts.save(0, 1, 1, tensors, keep_max=0)
    assert list(ckpts.rank_dir(0).iterdir()) == []


def test_remove_partial_deletes_only_temporary_files_of_saves(tmp_path):
    ckpts = RunCheckpoints(tmp_path, "tiny")
    touch(ckpts, 0, (1, 2))
    folder = ckpts.rank_dir(0)
    partial = [
        folder / ".tiny_rank_0-1_4.ckpt.tmp-0a1b2c3d",
        folder / "..tiny_rank_0-1_4.ckpt.tmp-0a1b2c3d.tmp-99999999",
    ]
    for p in partial:
        p.write_bytes(b"")
    (folder / ".keep").write_text("")
    assert sorted(ckpts.remove_partial(0)) == sorted(partial)
    assert sorted(p.name for p in folder.iterdir()) == [".keep", "tiny_rank_0-1_2.ckpt"]


def test_the_signature_round_trips_through_a_checkpoint(tmp_path):
    signature = {"batch_size": 2, "dataset": {"rows": 16, "sha256": "ab"}}
    path = RunCheckpoints(tmp_path, "tiny").save(
        0, 1, 1, {SIGNATURE: signature_tensor(signature)}, keep_max=0
    )
    assert read_signature(ms.load_checkpoint(str(path))) == signature
    assert read_signature({}) is None
