import json
import lzma
from dataclasses import replace

import pytest
import torch

from minillm import data
from minillm.config import ModelConfig
from minillm.train import PRESETS, TrainConfig, get_batch, learning_rate, train


def test_splits_are_disjoint_documents_covering_the_corpus():
    for kind in data.KINDS:
        docs = data.load_documents(kind)
        sizes = {split: len(data.load_text(kind, split)) for split in data.SPLITS}
        assert sum(sizes.values()) == sum(len(d) for d in docs) + sum(
            2 * (sum(data.split_of(i) == s for i in range(len(docs))) - 1) for s in data.SPLITS
        )
        test_docs = [d for i, d in enumerate(docs) if data.split_of(i) == "test"]
        assert test_docs and all(d not in data.load_text(kind, "train") for d in test_docs)


def test_corpus_files_match_provenance():
    provenance = (data.CORPUS_DIR / "PROVENANCE.md").read_text()
    for kind in data.KINDS:
        raw = lzma.decompress((data.CORPUS_DIR / f"{kind}.txt.xz").read_bytes())
        assert data.corpus_sha256(kind) in provenance
        assert len(raw) > 1_000_000


def test_sample_batch_starts_with_the_prefix_and_targets_are_shifted():
    gen = torch.Generator().manual_seed(0)
    stream = torch.arange(200, dtype=torch.uint8)
    x, y = data.sample_batch(stream, 4, 16, gen, prefix=(256,))
    assert x.shape == y.shape == (4, 16)
    assert (x[:, 0] == 256).all()
    assert torch.equal(x[:, 2:], y[:, 1:-1])
    assert torch.equal(y[:, 1:] - y[:, :-1], torch.ones(4, 15, dtype=torch.long))  # consecutive bytes


def test_eval_stream_and_bad_arguments():
    ids = data.eval_stream("prose", "test", 100)
    assert ids[0] == 256 and len(ids) == 101 and max(ids[1:]) < 256
    with pytest.raises(ValueError, match="kind must be one of"):
        data.load_text("poetry", "train")
    with pytest.raises(ValueError, match="split must be one of"):
        data.load_text("prose", "dev")
    with pytest.raises(ValueError, match="does not fit"):
        data.sample_batch(torch.zeros(10, dtype=torch.uint8), 2, 64, torch.Generator())
    with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
        data.sample_batch(torch.zeros(100, dtype=torch.uint8), 0, 16, torch.Generator())


def test_learning_rate_warms_up_then_decays_to_min_lr():
    cfg = TrainConfig(steps=1000, warmup=100, lr=1e-3, min_lr=1e-4)
    lrs = [learning_rate(cfg, s) for s in range(1000)]
    assert lrs[0] < lrs[50] < lrs[99] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(lrs[100:], lrs[101:]))
    assert learning_rate(cfg, 1000) == pytest.approx(1e-4)


def test_batches_mix_prose_and_code_with_the_preset_prefix():
    cfg = replace(PRESETS["sink_token"], batch_size=4, model=ModelConfig(max_seq_len=16))
    x, _ = get_batch(cfg, "train", torch.Generator().manual_seed(0))
    assert x.shape == (4, 16) and (x[:, 0] == 257).all() and (x[:, 1] == 256).all()


def test_training_lowers_the_loss_and_resumes_exactly(tmp_path):
    cfg = replace(PRESETS["tiny"], steps=40, eval_every=20, save_every=20)
    uninterrupted = train(cfg, tmp_path / "a", progress=False)
    for _ in range(3):  # interrupted three times: max_minutes=0 stops (resumably) after one step
        train(cfg, tmp_path / "b", max_minutes=0, progress=False)
    assert torch.load(tmp_path / "b" / "state.pt", weights_only=False)["step"] == 3
    resumed = train(cfg, tmp_path / "b", progress=False)
    for a, b in zip(uninterrupted.parameters(), resumed.parameters()):
        torch.testing.assert_close(a, b)
    log = [json.loads(line) for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [20, 40]
    assert log[-1]["val_bpb_prose"] < 7.0  # uniform over 259 ids is 8.02 bits
    assert len(log[-1]["sink_mass"]) == cfg.model.n_layers


def test_pausing_at_a_step_keeps_the_schedule_and_resumes_exactly(tmp_path):
    cfg = replace(PRESETS["tiny"], steps=30, eval_every=20, save_every=20)
    uninterrupted = train(cfg, tmp_path / "a", progress=False)
    paused = train(cfg, tmp_path / "b", progress=False, stop_at=25)
    assert torch.load(tmp_path / "b" / "state.pt", weights_only=False)["step"] == 25
    log = [json.loads(line) for line in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [20, 25]  # the pause is evaluated, like the end of a run
    assert any((p != q).any() for p, q in zip(paused.parameters(), uninterrupted.parameters()))
    resumed = train(cfg, tmp_path / "b", progress=False)  # the learning rate never saw stop_at
    for p, q in zip(uninterrupted.parameters(), resumed.parameters()):
        torch.testing.assert_close(p, q)


def test_resuming_with_another_config_is_refused(tmp_path):
    cfg = replace(PRESETS["tiny"], steps=5)
    train(cfg, tmp_path, progress=False)
    with pytest.raises(ValueError, match="trained with another config"):
        train(replace(cfg, lr=1e-2, steps=6), tmp_path, progress=False)


def test_bad_train_config():
    with pytest.raises(ValueError, match="prose_fraction must be in"):
        TrainConfig(prose_fraction=1.5)
    with pytest.raises(ValueError, match="min_lr <= lr"):
        TrainConfig(lr=1e-4, min_lr=1e-3)
