"""The public API fuzzed from its signatures: one argument at a time is replaced by a value drawn
for its annotated type (wrong types, bools for ints, 0, negatives, sizes past int64 or any memory,
NaN/inf/denormal floats, empty and mismatched shapes, wrong dtypes, a "meta" tensor standing for a
device mismatch), the others kept valid. The only acceptable outcomes: a result, or a ValueError /
TypeError (FileNotFoundError for a checkpoint or folder that is not there) that names the
argument. Each public callable gives one valid call (below); which arguments it has, and their
types, come from `inspect.signature`.
"""

from __future__ import annotations

import inspect
import signal
from contextlib import contextmanager

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm import masks
from minillm.cache import DenseCache, LambdaCache, SinkCache, WindowCache
from minillm.config import ModelConfig
from minillm.decoding import greedy, jacobi_decode, lookahead_decode
from minillm.infinite_former import ContinuousMemory
from minillm.megabyte import Megabyte, MegabyteConfig
from minillm.model import MiniLLM
from minillm.pretrained import list_pretrained, load_pretrained, load_tokenizer
from minillm.streaming import recompute_nll, stream_nll
from minillm.tokenizer import ByteTokenizer
from minillm_kernels import TRITON_AVAILABLE, block_sparse_attention

torch.manual_seed(0)
MODEL = MiniLLM(ModelConfig(d_model=16, n_layers=1, n_heads=2, max_seq_len=16)).eval()
MEGABYTE = Megabyte(
    MegabyteConfig(patch_size=2, d_global=8, n_global_layers=1, d_local=8, n_local_layers=1, max_patches=4)
)
MEMORY = ContinuousMemory(num_basis=4, sigmas=(0.1,), num_samples=8).fit(torch.randn(5, 3))
FITTED = ContinuousMemory(num_basis=4, sigmas=(0.1,), num_samples=8)  # refitted by every call
IDS = [1, 2, 3, 4]
QKV = torch.randn(3, 1, 1, 20, 16).unbind(0)  # (B, H, T, D) each: T not a multiple of the block

# each public callable of the course's API, with one valid call: {argument: value}
TARGETS = {
    "ByteTokenizer.encode": (ByteTokenizer().encode, {"text": "hi", "bos": False}),
    "ByteTokenizer.decode": (ByteTokenizer().decode, {"ids": [104, 105], "show_special": False}),
    "ModelConfig": (ModelConfig, {}),
    "masks.sliding_window": (masks.sliding_window, {"window": 4}),
    "masks.sink_window": (masks.sink_window, {"n_sink": 1, "window": 4}),
    "masks.lambda_shaped": (masks.lambda_shaped, {"n_global": 1, "n_local": 4}),
    "masks.materialize": (masks.materialize, {"mask_mod": masks.causal(), "q_len": 4, "kv_len": 4}),
    "WindowCache": (WindowCache, {"window": 4}),
    "SinkCache": (SinkCache, {"n_sink": 1, "window": 4}),
    "LambdaCache": (LambdaCache, {"n_global": 1, "n_local": 4, "max_distance": 4}),
    "MiniLLM.forward": (MODEL, {"ids": torch.tensor([IDS]), "positions": None, "cache": None}),
    "stream_nll": (stream_nll, {"model": MODEL, "ids": IDS, "cache": DenseCache(), "chunk_size": 1}),
    "recompute_nll": (recompute_nll, {"model": MODEL, "ids": IDS, "window": 2, "batch_size": 2}),
    "greedy": (greedy, {"model": MODEL, "prompt_ids": IDS, "max_new_tokens": 2}),
    "jacobi_decode": (jacobi_decode, {"model": MODEL, "prompt_ids": IDS, "max_new_tokens": 2, "window": 2}),
    "lookahead_decode": (lookahead_decode, {"model": MODEL, "prompt_ids": IDS, "max_new_tokens": 2, "window": 2}),
    "MegabyteConfig": (MegabyteConfig, {}),
    "Megabyte.forward": (MEGABYTE, {"ids": torch.tensor([IDS])}),
    "Megabyte.generate": (MEGABYTE.generate, {"prompt_ids": IDS, "max_new_tokens": 2, "temperature": None}),
    "ContinuousMemory": (ContinuousMemory, {"num_basis": 4, "sigmas": (0.1,), "ridge": 1.0, "tau": 0.5}),
    "ContinuousMemory.read": (MEMORY.read, {"t": torch.linspace(0, 1, 3)}),
    "ContinuousMemory.update": (MEMORY.update, {"x_new": torch.randn(2, 3)}),
    "ContinuousMemory.fit": (FITTED.fit, {"x": torch.randn(5, 3)}),
    "load_pretrained": (load_pretrained, {"name": "base"}),
    "list_pretrained": (list_pretrained, {}),
    "load_tokenizer": (load_tokenizer, {"name": "base"}),
}
if TRITON_AVAILABLE:  # elsewhere it refuses every call, saying that it needs Triton (tests/test_kernels.py)
    TARGETS["block_sparse_attention"] = (
        block_sparse_attention,
        {"q": QKV[0], "k": QKV[1], "v": QKV[2], "n_sink": 1, "window": 8, "causal": True},
    )

HUGE = [2**31, 2**63, 2**64 + 1, 10**30]
INTS = st.sampled_from([0, -1, -(2**63) - 1, True, False, 1.5, 2.0, "3", None, *HUGE]) | st.integers(-5, 40)
FLOATS = st.sampled_from([float("nan"), float("inf"), -float("inf"), 5e-324, -1.0, 0.0, 1e308, True, "1.0", None])
TENSORS = st.sampled_from(
    [
        torch.zeros(0, dtype=torch.long),
        torch.zeros(1, 0, dtype=torch.long),
        torch.tensor([[1.5, 2.0]]),
        torch.tensor([[True, False]]),
        torch.tensor([[1, 300]]),
        torch.tensor([[-1, 2]]),
        torch.tensor([float("nan"), 0.5]),
        torch.zeros(2, 2, 2, 2),
        torch.zeros(1, 2, dtype=torch.long, device="meta"),
        torch.zeros(2, 3, device="meta"),
        [1, 2],
        "12",
        None,
    ]
)
SEQUENCES = st.sampled_from([[], [-1], [256], [10**30], [1.5], [True], "abc", b"ab", None, 3, [float("nan")]])
TEXT = st.sampled_from(["", "\ud800", 3, b"bytes", None, ["a"]])
ANYTHING = st.sampled_from([None, 0, -1, 1.5, "x", object(), float("nan")])


def strategy(annotation: str) -> st.SearchStrategy:
    """Values for an argument of this annotation: mostly wrong ones, some valid."""
    if "Tensor" in annotation:
        return TENSORS | SEQUENCES
    if "Sequence" in annotation or "Iterable" in annotation or "list" in annotation:
        return SEQUENCES | FLOATS
    if "float" in annotation:
        return FLOATS | INTS
    if "int" in annotation:
        return INTS
    if "str" in annotation:
        return TEXT
    if "bool" in annotation:
        return INTS | TEXT
    return ANYTHING


def arguments(name: str) -> list[tuple[str, str]]:
    fn, _ = TARGETS[name]
    target = fn.forward if isinstance(fn, torch.nn.Module) else fn
    params = inspect.signature(target).parameters.values()
    return [(p.name, str(p.annotation)) for p in params if p.name != "self" and p.kind is not p.VAR_KEYWORD]


@contextmanager
def time_limit(seconds: int):
    """A call that a huge size sends into a loop (no check before the work) fails, not hangs."""

    def stop(*args):
        raise TimeoutError(f"still running after {seconds} s: a size was not checked before the work")

    old = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.mark.parametrize("name", TARGETS)
def test_valid_calls_succeed(name):
    fn, kwargs = TARGETS[name]
    with time_limit(20), torch.no_grad():
        fn(**kwargs)


@pytest.mark.parametrize("name", TARGETS)
def test_a_bad_argument_is_refused_by_name(name):
    fn, valid = TARGETS[name]
    params = arguments(name)

    @settings(max_examples=60, deadline=None, derandomize=True, database=None)
    @given(data=st.data())
    def check(data):
        arg, annotation = data.draw(st.sampled_from(params), label="argument")
        value = data.draw(strategy(annotation), label="value")
        if arg == "max_new_tokens" and value in HUGE[:1]:
            return  # a decoding loop is bounded by time, not memory: 2**31 tokens run (and Ctrl-C is safe)
        kwargs = {**valid, arg: value}
        if isinstance(valid.get("cache"), DenseCache):
            kwargs.setdefault("cache", DenseCache())
            if kwargs["cache"] is valid["cache"]:
                kwargs["cache"] = DenseCache()
        try:
            with time_limit(20), torch.no_grad():
                fn(**kwargs)
        except (ValueError, TypeError, FileNotFoundError) as e:  # a missing file is reported as one
            assert arg in str(e), f"{name}({arg}={value!r}) raised {type(e).__name__} without naming {arg}: {e}"

    check()
