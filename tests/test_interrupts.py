"""Ctrl-C anywhere leaves no half-updated state: proven by injection, not by a list of places.

A learner's "interrupt kernel" raises KeyboardInterrupt at whatever line Python is on. Each test
runs one update of a stateful object (a cache's forward, a memory's forward, a decoder's step, training)
once to count the package's lines it executes, then again once per line k with a
KeyboardInterrupt raised at the k-th line (a trace function: every layer, every step, the
bookkeeping between them). After each, the object must be as it was (its next use gives what an
object that was never interrupted gives) or refuse use with an error that says how to recover.
"""

from __future__ import annotations

import json
import re
import sys
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import minillm
from minillm import train as train_module
from minillm.cache import DenseCache, KVCache, LambdaCache, SinkCache, WindowCache
from minillm.config import ModelConfig
from minillm.decoding import LookaheadDecoder
from minillm.infinite_former import ContinuousMemory, InfiniteFormer, MemoryConfig
from minillm.lookahead import LookaheadCache, NGramPool
from minillm.megabyte import Megabyte, MegabyteConfig
from minillm.model import MiniLLM

PACKAGE = str(Path(minillm.__file__).parent)
REFUSAL = r"was interrupted during .* half-updated: .*(reset\(\)|clear\(\)|build a new one|start a new)"


@contextmanager
def interrupt_at(k: int | None, files: str = PACKAGE):
    """Raise KeyboardInterrupt at the k-th line executed in `files` (None: only count them)."""
    count = [0]

    def local(frame, event, arg):
        if event == "line":
            count[0] += 1
            if count[0] == k:
                raise KeyboardInterrupt  # a trace function's error stops tracing: one interrupt only
        return local

    def on_call(frame, event, arg):
        return local if frame.f_code.co_filename.startswith(files) else None

    grad = torch.is_grad_enabled()
    sys.settrace(on_call)
    try:
        yield count
    finally:
        sys.settrace(None)
        # An error raised by a trace function on the line event of a `with` block's exit skips
        # that __exit__ (a real Ctrl-C is checked at a call, after it): torch.no_grad's included.
        torch.set_grad_enabled(grad)


def every_line(make, update, check, files: str = PACKAGE) -> int:
    """make() -> a fresh object; update(obj) the call to interrupt; check(obj, interrupted) asserts
    the object is intact (or refuses). Interrupts at every line; returns how many there were."""
    obj = make()
    with interrupt_at(None, files) as count:
        update(obj)
    n_lines = count[0]
    assert n_lines > 10
    for k in range(1, n_lines + 1):
        obj = make()
        with pytest.raises(KeyboardInterrupt), interrupt_at(k, files):
            update(obj)
        check(obj, k)
    return n_lines


def intact_or_refusing(use, expected):
    """The object's next use gives `expected` (it was put back, or the update had finished when
    Ctrl-C came and the caller asks for what follows it), or refuses with a recovery hint."""
    try:
        got = use()
    except RuntimeError as e:
        assert re.search(REFUSAL, str(e)), str(e)
        return "refused"
    if isinstance(expected, torch.Tensor):
        assert torch.equal(got, expected)
    else:
        assert got == expected
    return "intact"


# ---- caches: every class, the readable path and a learner-style subclass


class MySinkCache(KVCache):
    """A learner's cache (chapter 03's exercise): its own keep(), the readable protocol."""

    positions_in_cache = True

    def __init__(self, n_sink: int, window: int) -> None:
        super().__init__()
        self.n_sink, self.window = n_sink, window

    def keep(self, n_entries: int) -> torch.Tensor | None:
        if n_entries <= self.n_sink + self.window:
            return None
        return torch.cat([torch.arange(self.n_sink), torch.arange(n_entries - self.window, n_entries)])


CACHES = {
    "dense": DenseCache,
    "window": lambda: WindowCache(4),
    "sink": lambda: SinkCache(2, 4),
    "lambda": lambda: LambdaCache(1, 4, 3),
    "readable": KVCache,
    "learner": lambda: MySinkCache(2, 4),
}
MODEL = MiniLLM(ModelConfig(d_model=16, n_layers=2, n_heads=2, n_kv_heads=1, max_seq_len=32)).double().eval()
IDS = torch.randint(0, 256, (1, 12), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("n_new", [1, 3])
@pytest.mark.parametrize("make", CACHES.values(), ids=CACHES.keys())
def test_an_interrupted_cache_forward_leaves_the_cache_as_it_was(make, n_new):
    def filled():
        cache = make()
        with torch.no_grad():
            MODEL(IDS[:, :6], cache=cache)
        return cache

    def forward(cache, start=6):
        with torch.no_grad():
            return MODEL(IDS[:, start : start + n_new], cache=cache).logits

    def going_on(cache):  # the interrupted forward again (unless it had finished), then one more token
        redone = [] if cache.seen == 6 + n_new else [forward(cache)]
        return torch.cat([*redone, forward(cache, 6 + n_new)], dim=1)

    expected, outcomes = going_on(filled()), set()

    def check(cache, k):
        rest = expected[:, n_new:] if cache.seen == 6 + n_new else expected
        outcomes.add(intact_or_refusing(lambda: going_on(cache), rest))

    every_line(filled, forward, check)
    assert outcomes == {"intact"}  # the caches undo an interrupted forward: nothing to refuse


def test_a_reset_cache_is_an_empty_one():
    cache, fresh = SinkCache(2, 4), SinkCache(2, 4)
    with torch.no_grad():
        MODEL(IDS[:, :6], cache=cache)
        cache.reset()
        assert len(cache) == 0 and cache.seen == 0
        torch.testing.assert_close(MODEL(IDS[:, :5], cache=cache).logits, MODEL(IDS[:, :5], cache=fresh).logits)


def test_an_update_that_cannot_be_undone_refuses_until_reset():
    """The double fault: Ctrl-C inside the undo itself leaves the cache marked, never silent."""
    cache = DenseCache()
    with torch.no_grad():
        MODEL(IDS[:, :4], cache=cache)
    cache.abort = lambda: (_ for _ in ()).throw(KeyboardInterrupt())  # the undo is interrupted too
    with pytest.raises(KeyboardInterrupt), torch.no_grad():
        with interrupt_at(40):
            MODEL(IDS[:, 4:6], cache=cache)
    del cache.abort
    with pytest.raises(RuntimeError, match=r"DenseCache was interrupted during a forward .* call cache.reset\(\)"):
        MODEL(IDS[:, 4:6], cache=cache)
    cache.reset()
    assert len(MODEL(IDS[:, :2], cache=cache).logits[0]) == 2


# ---- MEGABYTE's two stacks, each with its own cache


def test_an_interrupted_megabyte_stack_leaves_its_cache_as_it_was():
    torch.manual_seed(0)
    model = Megabyte(MegabyteConfig(patch_size=2, d_global=16, d_local=8, n_global_layers=2, n_local_layers=2))
    model = model.double().eval()
    x = torch.randn(1, 5, model.config.d_local, dtype=torch.float64, generator=torch.Generator().manual_seed(1))

    def filled():
        cache = DenseCache()
        with torch.no_grad():
            model.run_blocks(model.local_blocks, x[:, :2], cache)
        return cache

    def forward(cache, lo=2, hi=4):
        with torch.no_grad():
            return model.run_blocks(model.local_blocks, x[:, lo:hi], cache)

    def going_on(cache):
        redone = [] if cache.seen == 4 else [forward(cache)]
        return torch.cat([*redone, forward(cache, 4, 5)], dim=1)

    expected = going_on(filled())

    def check(cache, k):
        intact_or_refusing(lambda: going_on(cache), expected[:, 2:] if cache.seen == 4 else expected)

    every_line(filled, forward, check)


# ---- lookahead: its cache's commit, the n-gram pool, the decoder's step


def test_an_interrupted_lookahead_step_refuses_or_goes_on_exactly():
    prompt = IDS[0, :8].tolist()

    def make():
        decoder = LookaheadDecoder(MODEL, prompt, window=3, ngram=3, guesses=2, pool_from_prompt=True, seed=0)
        decoder.step()
        return decoder

    n_before = len(make().tokens)

    def tokens_after_two_steps(decoder):
        for _ in range(2 if len(decoder.tokens) == n_before else 1):  # one if the step had finished
            decoder.step()
        return decoder.tokens

    expected, outcomes = tokens_after_two_steps(make()), []

    def check(decoder, k):
        outcomes.append(intact_or_refusing(lambda: tokens_after_two_steps(decoder), expected))

    every_line(make, LookaheadDecoder.step, check)
    assert "refused" in outcomes  # a step changes pool, window and cache together: it cannot be undone


@pytest.mark.parametrize("index", [[0, 1], [0, 2]], ids=["in-place", "moved"])  # [0, 2] moves an entry
def test_an_interrupted_lookahead_commit_leaves_the_cache_as_it_was_or_refusing(index):
    def planned():
        cache = LookaheadCache()
        with torch.no_grad():
            MODEL(IDS[:, :4], cache=cache)
            cache.plan(torch.tensor([0, 1, 1]), torch.tensor([[1, 0, 0], [1, 1, 0], [1, 0, 1]], dtype=torch.bool))
            MODEL(IDS[:, 4:7], cache=cache)
        return cache

    def commit(cache):
        cache.commit(index)

    def after(cache):
        if cache._pending is not None:  # (the commit had not finished)
            commit(cache)
        with torch.no_grad():
            return MODEL(IDS[:, 6:8], cache=cache).logits

    expected = after(planned())
    every_line(planned, commit, lambda c, k: intact_or_refusing(lambda: after(c), expected))


def test_an_interrupted_pool_update_refuses_until_cleared():
    tokens = [1, 2, 3, 1, 2, 4, 1, 2, 3, 5]

    def make():
        pool = NGramPool(3, 2)
        pool.add_sequence([7, 8, 9, 7, 8, 1])
        return pool

    def contents(pool):
        return {key: pool.get(key) for key in sorted(pool.keys())}

    reference = make()
    reference.add_sequence(tokens)
    expected, before = contents(reference), contents(make())

    def check(pool, k):
        try:
            assert contents(pool) in (before, expected)  # nothing in between
        except RuntimeError as e:
            assert "call pool.clear() or build a new one" in str(e)
            pool.clear()
            assert len(pool) == 0

    every_line(make, lambda pool: pool.add_sequence(tokens), check)


# ---- the ∞-former's memories (STM, LTM, sticky samples) and a continuous memory alone


def test_an_interrupted_infinite_former_forward_leaves_every_memory_as_it_was():
    torch.manual_seed(0)
    memory = MemoryConfig(mem_len=4, sticky=True, num_basis=8, num_samples=8, num_bins=4)
    model = InfiniteFormer(ModelConfig(d_model=16, n_layers=2, n_heads=2, max_seq_len=32), memory).double().eval()

    def filled():
        memories = model.new_memories(torch.Generator().manual_seed(3))
        with torch.no_grad():
            model(IDS[:, :6], memories)
        return memories

    def forward(memories, lo=6):
        with torch.no_grad():
            return model(IDS[:, lo : lo + 3], memories)

    before = filled()[-1].stm

    def finished(memories):
        return not torch.equal(memories[-1].stm, before)

    def going_on(memories):
        redone = [] if finished(memories) else [forward(memories)]
        return torch.cat([*redone, forward(memories, 9)], dim=1)

    expected = going_on(filled())

    def check(memories, k):
        intact_or_refusing(lambda: going_on(memories), expected[:, 3:] if finished(memories) else expected)

    every_line(filled, forward, check)


def test_an_interrupted_continuous_memory_update_leaves_it_as_it_was():
    x = torch.randn(6, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))

    def make():
        return ContinuousMemory(num_basis=8, num_samples=8).fit(x)

    def state(memory):
        positions = memory.sampled_positions
        return memory.coefficients.clone(), None if positions is None else positions.clone()

    before, after = state(make()), state(make().update(x[:2] + 1))

    def check(memory, k):
        coef, positions = state(memory)
        if positions is None:  # not updated: as before, coefficients included
            assert torch.equal(coef, before[0])
        else:  # updated: both at once
            assert torch.equal(coef, after[0]) and torch.equal(positions, after[1])

    every_line(make, lambda m: m.update(x[:2] + 1), check)


# ---- training state: Ctrl-C at every line of the loop (train.py and train_megabyte.py share it)


def test_an_interrupted_training_run_resumes_exactly(tmp_path, monkeypatch, capsys):
    """`fit` on a tiny regression: interrupted at each of its lines, then run again, it ends with the
    uninterrupted run's weights and log (no step lost, none logged twice)."""
    cfg = replace(train_module.PRESETS["tiny"], steps=3, warmup=1, eval_every=1, save_every=2)

    def batch(cfg, split, generator):
        x = torch.randn(4, 3, generator=generator)
        return x, x.sum(-1, keepdim=True)

    monkeypatch.setattr(train_module, "get_batch", batch)

    def run(out):
        torch.manual_seed(0)
        model = torch.nn.Linear(3, 1)
        loss = lambda m, x, y: torch.nn.functional.mse_loss(m(x), y)  # noqa: E731
        evaluate = lambda m, step: {"w": round(float(m.weight.sum()), 6)}  # noqa: E731
        return train_module.fit(model, cfg, out, loss, evaluate, {}, progress=False)

    def log(out):
        return [{k: v for k, v in json.loads(e).items() if k != "minutes"} for e in (out / "log.jsonl").open()]

    fresh = run(tmp_path / "fresh")
    runs = iter(range(10**6))

    def check(out, k):
        resumed = run(out)
        assert torch.equal(resumed.weight, fresh.weight) and torch.equal(resumed.bias, fresh.bias), f"line {k}"
        assert log(out) == log(tmp_path / "fresh"), f"line {k}"

    every_line(lambda: tmp_path / f"run{next(runs)}", run, check, files=train_module.__file__)
    capsys.readouterr()
