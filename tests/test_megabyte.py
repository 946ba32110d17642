"""MEGABYTE: causality across patch borders, cached generation, call counts, configs, FLOPs."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from functools import cache

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode

from minillm.cache import DenseCache
from minillm.config import ModelConfig
from minillm.megabyte import PAD, Megabyte, MegabyteConfig, byte_loss, next_byte_logits
from minillm.model import Block, MiniLLM
from minillm.train_megabyte import PRESETS, flops_per_byte, train

P = 4  # patch size of the test models


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These models are tiny: one thread is fastest, and on a busy machine more threads only wait
    on each other (this file took 112 s with 2 threads under load, 6 s with 1)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@cache
def small_model(patch_size: int = P) -> Megabyte:
    """A seeded float32 model with both shifts on; tests that switch a shift off use a fresh one."""
    torch.manual_seed(0)
    return Megabyte(MegabyteConfig(patch_size=patch_size, max_patches=48 // patch_size)).eval()


def perturbed_logit_change(model: Megabyte, ids: torch.Tensor, t: int) -> torch.Tensor:
    """Largest |change| of each position's logits (T,) when byte t of ids (1, T) is replaced."""
    other = ids.clone()
    other[0, t] = (other[0, t] + 1 + t) % 256
    with torch.no_grad():
        return (model(other) - model(ids)).abs().amax(-1)[0]


@settings(max_examples=30, deadline=None)
@given(patch_size=st.sampled_from([1, 2, 4, 8]), T=st.integers(2, 40), data=st.data())
def test_perturbing_byte_t_leaves_logits_up_to_t_unchanged(patch_size: int, T: int, data) -> None:
    t = data.draw(st.integers(0, T - 2), label="t")
    ids = torch.randint(0, 256, (1, T), generator=torch.Generator().manual_seed(T + t))
    change = perturbed_logit_change(small_model(patch_size), ids, t)
    assert change[: t + 1].max() == 0, f"byte {t} leaked into logits <= {t}: {change[: t + 1].tolist()}"
    assert change[t + 1 :].max() > 1e-3  # the perturbation does reach the later bytes


@pytest.mark.parametrize("t", [3, 4, 5, 7, 8])  # last byte of a patch, first byte of the next, ...
def test_causal_at_patch_borders_and_each_shift_is_needed(t: int) -> None:
    ids = torch.randint(0, 256, (1, 16), generator=torch.Generator().manual_seed(t))
    assert perturbed_logit_change(small_model(), ids, t)[: t + 1].max() == 0
    # Negative controls: without the one-patch global shift a patch sees its own bytes; without
    # the one-byte local shift byte t is fed to the position that predicts it.
    for shift in ("shift_global", "shift_local"):
        torch.manual_seed(0)
        leaky = Megabyte(MegabyteConfig(patch_size=P, max_patches=12)).eval()
        setattr(leaky, shift, False)
        change = perturbed_logit_change(leaky, ids, t)
        assert change[: t + 1].max() > 1e-3, f"{shift}=False should leak byte {t} into logits <= {t}"
        if shift == "shift_local":
            assert change[t] > 1e-3  # the logit that scores byte t sees byte t


@pytest.mark.parametrize("T", [1, 3, 4, 5, 13])
def test_forward_shapes_and_padding_changes_no_logit(T: int) -> None:
    model = small_model()
    ids = torch.randint(0, 256, (2, 16), generator=torch.Generator().manual_seed(T))
    with torch.no_grad():
        logits, longer = model(ids[:, :T]), model(ids)
    assert logits.shape == (2, T, 259)
    torch.testing.assert_close(logits, longer[:, :T], atol=1e-5, rtol=0)  # the PAD-filled tail changes nothing


def test_byte_loss_ignores_pad_targets_and_scores_ids_after_the_first() -> None:
    model = small_model()
    ids = torch.randint(0, 256, (2, 9), generator=torch.Generator().manual_seed(1))
    padded = torch.cat([ids, torch.full((2, 3), PAD)], dim=1)
    with torch.no_grad():
        expected = torch.nn.functional.cross_entropy(model(ids)[:, 1:].flatten(0, 1), ids[:, 1:].flatten())
        torch.testing.assert_close(byte_loss(model, ids), expected)
        torch.testing.assert_close(byte_loss(model, padded), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("T", [1, 4, 7, 12])
def test_next_byte_logits_predict_the_byte_after_each_position_for_both_architectures(T: int) -> None:
    model = small_model()
    ids = torch.randint(0, 256, (2, T), generator=torch.Generator().manual_seed(T))
    with torch.no_grad():
        got = next_byte_logits(model, ids)  # (2, T, V)
        assert got.shape == (2, T, 259)
        for byte in (0, 97):  # whatever follows, Megabyte's logits at T score byte T from ids alone
            longer = torch.cat([ids, torch.full((2, 1), byte)], dim=1)
            torch.testing.assert_close(got, model(longer)[:, 1:])
        # the last one is what generation samples the next byte from (cached path, PAD-free)
        model.generate(ids[0].tolist(), 1, keep_logits=True)
        torch.testing.assert_close(got[0, -1], model.stats.logits[0], atol=1e-5, rtol=0)
        torch.manual_seed(0)
        flat = MiniLLM(ModelConfig(d_model=16, n_layers=1, n_heads=2, max_seq_len=16)).eval()
        torch.testing.assert_close(next_byte_logits(flat, ids), flat(ids).logits)


@pytest.mark.parametrize("n_prompt", [0, 1, 3, 4, 9, 12])  # multiples of P and not; 0 starts at the pad patch
def test_cached_generation_equals_argmax_of_the_full_forward(n_prompt: int) -> None:
    model = small_model()
    prompt = torch.randint(0, 256, (n_prompt,), generator=torch.Generator().manual_seed(n_prompt)).tolist()
    new = model.generate(prompt, 2 * P + 3, keep_logits=True)
    assert len(new) == 2 * P + 3 and all(0 <= b < 259 for b in new)
    with torch.no_grad():
        full = model(torch.tensor([prompt + new]))[0, n_prompt:]  # (new, V): position t scores byte t
    assert new == full.argmax(-1).tolist()
    torch.testing.assert_close(torch.stack(model.stats.logits), full, atol=1e-5, rtol=0)


def test_an_interrupted_stack_leaves_its_cache_as_it_was_and_the_other_stack_refuses_it() -> None:
    model = small_model()
    width = model.config.d_global * P
    x = torch.randn(1, 5, width, generator=torch.Generator().manual_seed(0))
    cache, twin = DenseCache(), DenseCache()
    with torch.no_grad():
        model.run_blocks(model.global_blocks, x[:, :3], cache)
        model.run_blocks(model.global_blocks, x[:, :3], twin)
        handle = model.global_blocks[1].register_forward_pre_hook(lambda module, args: 1 / 0)
        try:
            with pytest.raises(ZeroDivisionError):
                model.run_blocks(model.global_blocks, x[:, 3:], cache)
        finally:
            handle.remove()
        assert len(cache) == 3 and [k.shape[2] for k in cache.keys] == [3] * len(model.global_blocks)
        # it goes on exactly as the cache that never saw the interrupted call
        resumed, fresh = (model.run_blocks(model.global_blocks, x[:, 3:], c) for c in (cache, twin))
        torch.testing.assert_close(resumed, fresh)
        with pytest.raises(ValueError, match="another model"):
            model.run_blocks(model.local_blocks, torch.randn(1, 1, model.config.d_local), cache)


@pytest.mark.parametrize(("n_prompt", "n_new"), [(0, 1), (0, 13), (3, 1), (4, 4), (5, 11), (8, 9)])
def test_global_model_runs_once_per_patch_and_local_once_per_byte(n_prompt: int, n_new: int) -> None:
    model = small_model()
    model.generate(list(range(65, 65 + n_prompt)), n_new)
    T = n_prompt + n_new  # bytes in the sequence once generation is done
    s = model.stats
    assert s.global_patches == math.ceil(T / P)  # every patch that holds a byte, once
    assert s.global_calls == math.ceil(T / P) - n_prompt // P  # the prompt's complete patches go in one call
    assert s.local_calls == n_new
    assert s.local_bytes == n_new + n_prompt % P  # the prompt's unfinished patch is fed once


def test_sampling_with_top_k_1_is_greedy_and_a_seeded_draw_repeats() -> None:
    model, prompt = small_model(), [72, 105, 32]
    greedy = model.generate(prompt, 9)
    assert model.generate(prompt, 9, temperature=0.7, top_k=1) == greedy
    draws = [model.generate(prompt, 9, temperature=1.0, generator=torch.Generator().manual_seed(5)) for _ in range(2)]
    assert draws[0] == draws[1]
    assert model.generate(prompt, 9, temperature=0.0) == greedy  # the package's one convention: 0 is greedy
    with pytest.raises(ValueError, match="temperature"):
        model.generate(prompt, 2, temperature=-1.0)


def test_inputs_longer_than_the_learned_positions_raise() -> None:
    model = small_model()  # max_patches=12: 48 bytes
    with pytest.raises(ValueError, match="max_patches"):
        model(torch.zeros(1, 49, dtype=torch.long))
    with pytest.raises(ValueError, match="max_patches"):
        model.generate([1] * 40, 9)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("patch_size", 0),
        ("d_global", -8),
        ("n_global_layers", 0),
        ("n_global_heads", 3),  # does not divide P·D_G = 128
        ("n_local_heads", 64),  # divides D_L = 64, but head dim 1 is odd: no RoPE pairs
        ("max_patches", 0),
        ("vocab_size", 256),  # no room for PAD
        ("rope_base", 1.0),
        ("norm_eps", 0.0),
    ],
)
def test_bad_configs_raise_value_error_naming_the_field(name: str, value) -> None:
    with pytest.raises(ValueError, match=f"MegabyteConfig.{name}"):
        MegabyteConfig(**{name: value})


def test_both_stacks_are_the_course_block_with_their_own_widths() -> None:
    model = small_model()
    assert all(type(b) is Block for b in [*model.global_blocks, *model.local_blocks])
    assert model.global_blocks[0].attn.qkv.in_features == P * 32 and model.local_blocks[0].attn.qkv.in_features == 64


def test_flops_per_byte_counts_the_matmuls_torch_counts() -> None:
    B, T = 2, 32
    ids = torch.randint(0, 256, (B, T), generator=torch.Generator().manual_seed(0))
    flat = ModelConfig(d_model=64, n_layers=2, n_heads=4)
    for config, model in ((small_model().config, small_model()), (flat, MiniLLM(flat))):
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(ids)
        counted = counter.get_total_flops() / (B * T)
        f, dense = flops_per_byte(config, T), flops_per_byte(config, T, causal=False)
        # CPU attention is not counted by torch 2.13; where it is, it is counted dense
        assert counted == pytest.approx(f.matmul) or counted == pytest.approx(dense.total)


@pytest.mark.parametrize(("mega", "flat", "seq_len"), [("megabyte", "flat", 512), ("megabyte_2k", "flat_2k", 2048)])
def test_presets_megabyte_and_flat_are_matched_in_compute_not_parameters(mega: str, flat: str, seq_len: int) -> None:
    mega, flat = PRESETS[mega], PRESETS[flat]
    assert replace(mega.train, model=None) == replace(flat.train, model=None)  # same data, batches, schedule
    assert mega.seq_len == flat.seq_len == seq_len
    assert mega.flops_per_byte().total == pytest.approx(flat.flops_per_byte().total, rel=0.05)
    assert mega.build().num_parameters() > 4 * flat.build().num_parameters()


def test_the_long_presets_are_in_the_regime_where_attention_dominates_the_flat_model() -> None:
    # at T = 2048 a flat layer's attention (4 T d / 2 FLOPs per byte) outweighs its matmuls (24 d^2): T > 12 d
    flat, mega = PRESETS["flat_2k"], PRESETS["megabyte_2k"]
    assert flat.flops_per_byte().attention / flat.flops_per_byte().total > 0.5
    assert mega.flops_per_byte().attention / mega.flops_per_byte().total < 0.1
    assert flat.train.lr == flat.train.min_lr  # constant rate: one run passes every budget on equal terms


def test_training_loop_stops_resumes_and_logs_bits_per_byte(tmp_path) -> None:
    run = PRESETS["tiny_megabyte"]
    run = replace(run, train=replace(run.train, steps=3, eval_every=2, save_every=2))
    train(run, tmp_path, max_minutes=0, progress=False)  # stops (resumably) after one step
    assert torch.load(tmp_path / "state.pt", weights_only=False)["step"] == 1
    train(run, tmp_path, progress=False)
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [2, 3] and all(0 < r["val_bpb_code"] < 10 for r in log)
    with pytest.raises(ValueError, match="another config"):
        train(replace(run, train=replace(run.train, steps=4)), tmp_path, progress=False)


@pytest.mark.parametrize("T", [16, 13])
def test_forward_accepts_a_non_contiguous_batch(T: int) -> None:
    """A transposed (B, T) view, as a data loader or a slice may give: same logits as its contiguous copy."""
    torch.manual_seed(0)
    model = Megabyte(MegabyteConfig(patch_size=4)).eval()
    ids = torch.randint(0, 256, (T, 2)).t()  # (2, T), not contiguous
    assert not ids.is_contiguous()
    with torch.no_grad():
        torch.testing.assert_close(model(ids), model(ids.contiguous()))
