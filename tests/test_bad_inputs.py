"""The catalogue of bad inputs: every public entry point and command-line flag, each fed a value of
the wrong type, range, shape, dtype or finiteness. Each case must raise the stated exception with
a message that names the argument (or flag), before any work is done.

The cases are general on purpose (floats, bools, strings, NaN, inf, zero, negative, empty, wrong
shape): what a learner types by mistake. `python tests/test_bad_inputs.py` classifies every case
as clear (the right exception, naming the argument), obscure (another exception, or a message
that does not name it) or silent (no exception: a wrong result), by module.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import math
import runpy
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
import torch

import minillm
from minillm import masks
from minillm.cache import DenseCache
from minillm.config import ModelConfig
from minillm.model import MiniLLM
from minillm.tokenizer import ByteTokenizer

ROOT = Path(minillm.__file__).resolve().parents[1]  # the checkout whose package and benchmarks are tested
NAN, INF = math.nan, math.inf


@dataclass(frozen=True)
class Case:
    module: str
    label: str
    call: Callable[[], object]
    error: type[BaseException] | tuple[type[BaseException], ...]
    names: tuple[str, ...]  # each must appear in the message


# ---- what the cases run on: tiny models, built once ------------------------------------------


@cache
def model() -> MiniLLM:
    torch.manual_seed(0)
    return MiniLLM(ModelConfig(d_model=32, n_layers=2, n_heads=4, max_seq_len=32)).eval()


@cache
def megabyte():
    from minillm.megabyte import Megabyte, MegabyteConfig

    torch.manual_seed(0)
    config = MegabyteConfig(d_global=16, n_global_layers=1, d_local=16, n_local_layers=1, max_patches=8)
    return Megabyte(config).eval()


def ids(*shape: int) -> torch.Tensor:
    return torch.randint(0, 256, shape, generator=torch.Generator().manual_seed(0))


def tmp_dir() -> Path:
    import tempfile

    return Path(tempfile.mkdtemp(prefix="bad_inputs_"))


def a_file() -> Path:
    path = tmp_dir() / "a_file"
    path.write_text("not a directory")
    return path


class Parsed(Exception):
    """Raised in place of running a command whose flags all parsed: a bad flag that gets here is silent."""


def flags(script: str, *argv: str) -> None:
    """Parse the command line of `script` (a module name or a path under the repo); a bad flag ends
    in argparse's error, which is re-raised as ValueError with argparse's message."""
    original = argparse.ArgumentParser.parse_args

    def parse_then_stop(self, args=None, namespace=None):
        original(self, args, namespace)
        raise Parsed("parsed")

    stderr, old_argv = io.StringIO(), sys.argv
    try:
        argparse.ArgumentParser.parse_args = parse_then_stop
        sys.argv = [script, *argv]
        with contextlib.redirect_stderr(stderr):
            if script.endswith(".py"):  # as `python benchmarks/x.py` runs it: its folder on sys.path
                sys.path.insert(0, str((ROOT / script).parent))
                runpy.run_path(str(ROOT / script), run_name="__main__")
            else:
                importlib.import_module(script).main()
    except SystemExit as e:
        if e.code != 0:
            raise ValueError(stderr.getvalue().strip()) from None
    except Parsed:
        return  # silent: the command would have run
    finally:
        argparse.ArgumentParser.parse_args = original
        sys.argv = old_argv
        if script.endswith(".py"):
            sys.path.remove(str((ROOT / script).parent))


def nan_checkpoint() -> None:
    """A checkpoint whose weights are all NaN, with a json whose sha256 matches them."""
    from minillm.pretrained import load_pretrained, save_checkpoint

    broken = MiniLLM(ModelConfig(d_model=16, n_layers=1, n_heads=2, max_seq_len=8))
    with torch.no_grad():
        for p in broken.parameters():
            p.fill_(NAN)
    directory = tmp_dir()
    save_checkpoint(broken, "diverged", {"command": "python -m minillm.train ..."}, directory)
    load_pretrained("diverged", directory)


def train_with(**kwargs) -> None:
    from dataclasses import replace

    from minillm.train import PRESETS, train

    out = kwargs.pop("out_dir") if "out_dir" in kwargs else tmp_dir()
    train(replace(PRESETS["tiny"], steps=2), out, progress=False, **kwargs)


def train_config(**kwargs):
    from minillm.train import TrainConfig

    return TrainConfig(**kwargs)


def decode_with(fn: str, **kwargs) -> None:
    from minillm import decoding

    args = {"prompt_ids": [256, 72], "max_new_tokens": 2, **kwargs}
    m = args.pop("model", model())
    getattr(decoding, fn)(m, **args)


def stream(**kwargs) -> None:
    from minillm.streaming import stream_nll

    args = {"ids": [256, 72, 105], "cache": DenseCache(), **kwargs}
    stream_nll(args.pop("model", model()), **args)


def recompute(**kwargs) -> None:
    from minillm.streaming import recompute_nll

    args = {"ids": [256, 72, 105, 33, 10], "window": 2, **kwargs}
    recompute_nll(model(), **args)


def forward(x=None, **kwargs) -> None:
    model()(ids(1, 4) if x is None else x, **kwargs)


def memory(**kwargs):
    from minillm.infinite_former import ContinuousMemory

    return ContinuousMemory(16, (0.05, 0.1), **kwargs)


def fitted():
    return memory().fit(torch.randn(8, 3))


def with_nan(x: torch.Tensor, value: float = NAN) -> torch.Tensor:
    x = x.clone()
    x.view(-1)[0] = value
    return x


def cli(script: str, flag: str, value: str, *other: str) -> Case:
    """A command line with one bad flag; the error must name the flag."""
    module = "benchmarks" if script.endswith(".py") else "train CLI"
    label = f"{script.split('/')[-1].removesuffix('.py')} {flag} {value!r}"
    return Case(module, label, lambda: flags(script, *other, flag, value), ValueError, (flag,))


tok = ByteTokenizer()
q = torch.randn(1, 2, 8, 8)


def c(module, label, call, error, *names) -> Case:
    return Case(module, label, call, error, names)


CASES = [
    # ---- tokenizer ----
    c("tokenizer", "decode floats", lambda: tok.decode([72.9, 105.2]), TypeError, "ids"),
    c("tokenizer", "decode a str", lambda: tok.decode("123"), TypeError, "ids"),
    c("tokenizer", "decode bools", lambda: tok.decode([True, False]), TypeError, "ids"),
    c("tokenizer", "decode a float tensor", lambda: tok.decode(torch.tensor([72.0])), TypeError, "ids"),
    c("tokenizer", "decode a 2-D tensor", lambda: tok.decode(torch.tensor([[72, 105]])), ValueError, "ids"),
    c("tokenizer", "decode an id too large", lambda: tok.decode([300]), ValueError, "ids"),
    c("tokenizer", "decode a negative id", lambda: tok.decode([-1]), ValueError, "ids"),
    c("tokenizer", "decode None", lambda: tok.decode(None), TypeError, "ids"),
    c("tokenizer", "decode nested lists", lambda: tok.decode([[72]]), TypeError, "ids"),
    c("tokenizer", "show_special not a bool", lambda: tok.decode([72], show_special=1), TypeError, "show_special"),
    c("tokenizer", "encode bytes", lambda: tok.encode(b"hi"), TypeError, "text"),
    c("tokenizer", "encode a lone surrogate", lambda: tok.encode("a\ud800"), ValueError, "text"),
    c("tokenizer", "encode None", lambda: tok.encode(None), TypeError, "text"),
    c("tokenizer", "bos not a bool", lambda: tok.encode("a", bos="yes"), TypeError, "bos"),
    # ---- config ----
    c("config", "rope_base a str", lambda: ModelConfig(rope_base="x"), TypeError, "rope_base"),
    c("config", "rope_base NaN", lambda: ModelConfig(rope_base=NAN), ValueError, "rope_base"),
    c("config", "rope_base inf", lambda: ModelConfig(rope_base=INF), ValueError, "rope_base"),
    c("config", "rope_base 1", lambda: ModelConfig(rope_base=1.0), ValueError, "rope_base"),
    c("config", "rope_base a bool", lambda: ModelConfig(rope_base=True), TypeError, "rope_base"),
    c("config", "norm_eps NaN", lambda: ModelConfig(norm_eps=NAN), ValueError, "norm_eps"),
    c("config", "norm_eps negative", lambda: ModelConfig(norm_eps=-1e-5), ValueError, "norm_eps"),
    c("config", "d_model a float", lambda: ModelConfig(d_model=32.0), TypeError, "d_model"),
    c("config", "n_heads a bool", lambda: ModelConfig(n_heads=True), TypeError, "n_heads"),
    c("config", "vocab_size 0", lambda: ModelConfig(vocab_size=0), ValueError, "vocab_size"),
    c("config", "d_model not divisible", lambda: ModelConfig(d_model=30, n_heads=4), ValueError, "d_model"),
    c("config", "n_kv_heads not dividing", lambda: ModelConfig(n_kv_heads=3), ValueError, "n_kv_heads"),
    c("config", "norm unknown", lambda: ModelConfig(norm="batchnorm"), ValueError, "norm"),
    c("config", "mlp unknown", lambda: ModelConfig(mlp="relu"), ValueError, "mlp"),
    c("config", "tie_embeddings an int", lambda: ModelConfig(tie_embeddings=1), TypeError, "tie_embeddings"),
    c("config", "mlp_hidden 0", lambda: ModelConfig(mlp_hidden=0), ValueError, "mlp_hidden"),
    c("config", "MiniLLM of a str", lambda: MiniLLM("base"), TypeError, "config"),
    # ---- model.forward ----
    c("model", "float ids", lambda: forward(torch.rand(1, 4)), TypeError, "ids"),
    c("model", "bool ids", lambda: forward(torch.ones(1, 4, dtype=torch.bool)), TypeError, "ids"),
    c("model", "list ids", lambda: forward([[1, 2]]), TypeError, "ids"),
    c("model", "1-D ids", lambda: forward(ids(4)), ValueError, "ids"),
    c("model", "no tokens", lambda: forward(ids(1, 0)), ValueError, "ids"),
    c("model", "empty batch", lambda: forward(ids(0, 4)), ValueError, "ids"),
    c("model", "id too large", lambda: forward(torch.tensor([[1, 259]])), ValueError, "ids"),
    c("model", "negative id", lambda: forward(torch.tensor([[1, -1]])), ValueError, "ids"),
    c("model", "bool positions", lambda: forward(positions=torch.ones(4, dtype=torch.bool)), TypeError, "positions"),
    c("model", "float positions", lambda: forward(positions=torch.arange(4.0)), TypeError, "positions"),
    c("model", "NaN positions", lambda: forward(positions=with_nan(torch.arange(4.0))), TypeError, "positions"),
    c("model", "decreasing positions", lambda: forward(positions=torch.arange(4).flip(0)), ValueError, "positions"),
    c("model", "list positions", lambda: forward(positions=[0, 1, 2, 3]), TypeError, "positions"),
    c("model", "positions too short", lambda: forward(positions=torch.arange(3)), ValueError, "positions"),
    c("model", "2-D positions", lambda: forward(positions=torch.arange(4)[None]), ValueError, "positions"),
    c(
        "model",
        "positions with a cache",
        lambda: forward(positions=torch.arange(4), cache=DenseCache()),
        ValueError,
        "positions",
    ),
    c("model", "cache a str", lambda: forward(cache="dense"), TypeError, "cache"),
    c("model", "max_distance 0", lambda: forward(max_distance=0), ValueError, "max_distance"),
    c("model", "max_distance a float", lambda: forward(max_distance=2.5), TypeError, "max_distance"),
    c("model", "int mask_mod", lambda: forward(mask_mod=lambda b, h, q, k: q - k), TypeError, "mask_mod"),
    c(
        "model",
        "mask_mod with Python if",
        lambda: forward(mask_mod=lambda b, h, q, k: q >= k if q > k else q == k),
        TypeError,
        "mask_mod",
    ),
    # ---- masks ----
    c("masks", "window 0", lambda: masks.sliding_window(0), ValueError, "window"),
    c("masks", "window a float", lambda: masks.sliding_window(2.5), TypeError, "window"),
    c("masks", "window a bool", lambda: masks.sliding_window(True), TypeError, "window"),
    c("masks", "n_sink negative", lambda: masks.sink_window(-1, 4), ValueError, "n_sink"),
    c("masks", "n_local 0", lambda: masks.lambda_shaped(2, 0), ValueError, "n_local"),
    c("masks", "n_global a str", lambda: masks.lambda_shaped("2", 4), TypeError, "n_global"),
    c("masks", "q_len 0", lambda: masks.materialize(masks.causal(), 0), ValueError, "q_len"),
    c("masks", "kv_len 0", lambda: masks.materialize(masks.causal(), 4, 0), ValueError, "kv_len"),
    c("masks", "mask_mod not callable", lambda: masks.materialize("causal", 4), TypeError, "mask_mod"),
    c("masks", "mask_mod gives ints", lambda: masks.materialize(lambda b, h, q, k: q - k, 4), TypeError, "mask_mod"),
    c(
        "masks",
        "mask_mod gives floats",
        lambda: masks.materialize(lambda b, h, q, k: (q >= k).float(), 4),
        TypeError,
        "mask_mod",
    ),
    c("masks", "mask_mod gives a bool", lambda: masks.materialize(lambda b, h, q, k: True, 4), TypeError, "mask_mod"),
    c(
        "masks",
        "mask_mod of the wrong shape",
        lambda: masks.materialize(lambda b, h, q, k: torch.ones(3, 3, dtype=torch.bool), 4),
        ValueError,
        "mask_mod",
    ),
    c(
        "masks",
        "mask_mod with Python and",
        lambda: masks.materialize(lambda b, h, q, k: (q >= k) and (q - k < 2), 4),
        TypeError,
        "mask_mod",
    ),
    # ---- streaming ----
    c("streaming", "float ids", lambda: stream(ids=[72.9, 105.2, 33.0]), TypeError, "ids"),
    c("streaming", "str ids", lambda: stream(ids="Hello"), TypeError, "ids"),
    c("streaming", "float tensor ids", lambda: stream(ids=torch.tensor([72.0, 105.0])), TypeError, "ids"),
    c("streaming", "one token", lambda: stream(ids=[72]), ValueError, "ids"),
    c("streaming", "2-D ids", lambda: stream(ids=ids(2, 4)), ValueError, "ids"),
    c("streaming", "id too large", lambda: stream(ids=[72, 259]), ValueError, "ids"),
    c("streaming", "cache a str", lambda: stream(cache="dense"), TypeError, "cache"),
    c("streaming", "chunk_size 0", lambda: stream(chunk_size=0), ValueError, "chunk_size"),
    c("streaming", "chunk_size a float", lambda: stream(chunk_size=1.5), TypeError, "chunk_size"),
    c("streaming", "model a str", lambda: stream(model="base"), TypeError, "model"),
    c("streaming", "batch_size -1", lambda: recompute(batch_size=-1), ValueError, "batch_size"),
    c("streaming", "batch_size 0", lambda: recompute(batch_size=0), ValueError, "batch_size"),
    c("streaming", "batch_size a float", lambda: recompute(batch_size=2.0), TypeError, "batch_size"),
    c("streaming", "window 0", lambda: recompute(window=0), ValueError, "window"),
    c("streaming", "window a bool", lambda: recompute(window=True), TypeError, "window"),
    c("streaming", "recompute on floats", lambda: recompute(ids=[1.5, 2.5, 3.5]), TypeError, "ids"),
    # ---- decoding, sampling ----
    c("decoding", "temperature negative", lambda: decode_with("sample", temperature=-1.0), ValueError, "temperature"),
    c("decoding", "temperature NaN", lambda: decode_with("sample", temperature=NAN), ValueError, "temperature"),
    c("decoding", "temperature inf", lambda: decode_with("sample", temperature=INF), ValueError, "temperature"),
    c("decoding", "temperature a str", lambda: decode_with("sample", temperature="hot"), TypeError, "temperature"),
    c("decoding", "top_k 0", lambda: decode_with("sample", top_k=0), ValueError, "top_k"),
    c("decoding", "top_k a float", lambda: decode_with("sample", top_k=2.5), TypeError, "top_k"),
    c("decoding", "max_new_tokens -1", lambda: decode_with("sample", max_new_tokens=-1), ValueError, "max_new_tokens"),
    c(
        "decoding", "max_new_tokens a float", lambda: decode_with("greedy", max_new_tokens=1.5), TypeError, "max_new"
    ),
    c("decoding", "empty prompt", lambda: decode_with("greedy", prompt_ids=[]), ValueError, "prompt_ids"),
    c("decoding", "float prompt", lambda: decode_with("greedy", prompt_ids=[72.9]), TypeError, "prompt_ids"),
    c("decoding", "str prompt", lambda: decode_with("greedy", prompt_ids="Hi"), TypeError, "prompt_ids"),
    c("decoding", "prompt id too large", lambda: decode_with("greedy", prompt_ids=[999]), ValueError, "prompt_ids"),
    c("decoding", "seed negative", lambda: decode_with("sample", seed=-1), ValueError, "seed"),
    c("decoding", "generator a str", lambda: decode_with("sample", generator="g"), TypeError, "generator"),
    c("decoding", "model a str", lambda: decode_with("greedy", model="base"), TypeError, "model"),
    c("decoding", "jacobi window 0", lambda: decode_with("jacobi_decode", window=0), ValueError, "window"),
    c("decoding", "lookahead ngram 1", lambda: decode_with("lookahead_decode", ngram=1), ValueError, "ngram"),
    c("decoding", "lookahead guesses -1", lambda: decode_with("lookahead_decode", guesses=-1), ValueError, "guesses"),
    c("decoding", "lookahead accept", lambda: decode_with("lookahead_decode", accept="all"), ValueError, "accept"),
    c(
        "decoding",
        "pool_from_prompt an int",
        lambda: decode_with("lookahead_decode", pool_from_prompt=1),
        TypeError,
        "pool_from_prompt",
    ),
    c(
        "decoding",
        "next_token_probs of ints",
        lambda: __import__("minillm.decoding").decoding.next_token_probs(torch.arange(5), 1.0),
        TypeError,
        "logits",
    ),
    c(
        "decoding",
        "next_token_probs at temperature 0",
        lambda: __import__("minillm.decoding").decoding.next_token_probs(torch.randn(5), 0.0),
        ValueError,
        "temperature",
    ),
    c("sampling", "draw NaN probs", lambda: _draw(with_nan(torch.ones(4))), ValueError, "probs"),
    c("sampling", "draw all-zero probs", lambda: _draw(torch.zeros(4)), ValueError, "probs"),
    c("sampling", "draw negative probs", lambda: _draw(torch.tensor([0.5, -0.1, 0.6])), ValueError, "probs"),
    c("sampling", "draw 2-D probs", lambda: _draw(torch.ones(2, 2)), TypeError, "probs"),
    c("sampling", "draw int probs", lambda: _draw(torch.ones(4, dtype=torch.long)), TypeError, "probs"),
    c("sampling", "draw with a seed as generator", lambda: _draw(torch.ones(4), 0), TypeError, "generator"),
    # ---- train: the config, the loop, the command lines ----
    c("train", "batch_size 0", lambda: train_config(batch_size=0), ValueError, "batch_size"),
    c("train", "batch_size a float", lambda: train_config(batch_size=2.5), TypeError, "batch_size"),
    c("train", "steps a str", lambda: train_config(steps="100"), TypeError, "steps"),
    c("train", "lr NaN", lambda: train_config(lr=NAN), ValueError, "lr"),
    c("train", "warmup negative", lambda: train_config(warmup=-1), ValueError, "warmup"),
    c("train", "grad_clip inf", lambda: train_config(grad_clip=INF), ValueError, "grad_clip"),
    c("train", "prose_fraction 1.5", lambda: train_config(prose_fraction=1.5), ValueError, "prose_fraction"),
    c("train", "model a str", lambda: train_config(model="base"), TypeError, "model"),
    c("train", "stop_at 0", lambda: train_with(stop_at=0), ValueError, "stop_at"),
    c("train", "stop_at a float", lambda: train_with(stop_at=1.5), TypeError, "stop_at"),
    c("train", "max_minutes -1", lambda: train_with(max_minutes=-1), ValueError, "max_minutes"),
    c("train", "max_minutes NaN", lambda: train_with(max_minutes=NAN), ValueError, "max_minutes"),
    c("train", "resume a str", lambda: train_with(resume="yes"), TypeError, "resume"),
    c("train", "out_dir empty", lambda: train_with(out_dir=""), ValueError, "out_dir"),
    c("train", "out_dir an int", lambda: train_with(out_dir=3), TypeError, "out_dir"),
    c("train", "out_dir a file", lambda: train_with(out_dir=a_file()), ValueError, "out_dir"),
    cli("minillm.train", "--stop-at", "0", "--preset", "tiny"),  # trained the whole schedule
    cli("minillm.train", "--stop-at", "-3", "--preset", "tiny"),
    cli("minillm.train", "--checkpoint", "", "--preset", "tiny"),  # exited 0, saving nothing
    cli("minillm.train", "--checkpoint", "a/b", "--preset", "tiny"),
    cli("minillm.train", "--max-minutes", "-1", "--preset", "tiny"),  # stopped after one step
    cli("minillm.train", "--max-minutes", "nan", "--preset", "tiny"),
    cli("minillm.train", "--threads", "0", "--preset", "tiny"),  # was ignored
    cli("minillm.train", "--steps", "0", "--preset", "tiny"),
    cli("minillm.train", "--steps", "2.5", "--preset", "tiny"),
    cli("minillm.train", "--seed", "-1", "--preset", "tiny"),
    cli("minillm.train", "--preset", "huge"),
    cli("minillm.train_megabyte", "--stop-at", "0"),
    cli("minillm.train_megabyte", "--threads", "0"),
    cli("minillm.train_megabyte", "--checkpoint", ""),
    # ---- benchmarks' flags ----
    cli("benchmarks/attention.py", "--window", "0"),  # quietly became 256
    cli("benchmarks/attention.py", "--block", "0"),
    cli("benchmarks/attention.py", "--lengths", "0"),
    cli("benchmarks/attention.py", "--n-sink", "-1"),
    cli("benchmarks/attention.py", "--heads", "0"),
    cli("benchmarks/attention.py", "--repeats", "0"),
    cli("benchmarks/attention.py", "--device", "gpu"),
    cli("benchmarks/decoding.py", "--prompts", "0"),
    cli("benchmarks/decoding.py", "--new-tokens", "-1"),
    cli("benchmarks/decoding.py", "--device", "nope"),
    cli("benchmarks/megabyte.py", "--train-steps", "0"),
    cli("benchmarks/megabyte.py", "--lengths", "0"),
    cli("benchmarks/megabyte_fair.py", "--lrs", "0"),
    cli("benchmarks/megabyte_fair.py", "--lrs", "nan"),
    cli("benchmarks/megabyte_fair.py", "--budget-steps", "0"),
    cli("benchmarks/megabyte_fair.py", "--threads", "0"),
    cli("benchmarks/megabyte_fair.py", "--model", "gpt"),
    cli("benchmarks/lm_infinite.py", "--targets", "0"),
    cli("benchmarks/lm_infinite.py", "--repeats", "0"),
    cli("benchmarks/infinite_former.py", "--first-steps", "0"),
    cli("benchmarks/infinite_former.py", "--threads", "0"),
    # ---- pretrained ----
    c("pretrained", "name an int", lambda: _load(3), TypeError, "name"),
    c("pretrained", "unknown name", lambda: _load("no_such_model"), FileNotFoundError, "no_such_model"),
    c("pretrained", "directory an int", lambda: _load("base", directory=3), TypeError, "directory"),
    c("pretrained", "directory a file", lambda: _load("base", directory=a_file()), ValueError, "directory"),
    c("pretrained", "device unknown", lambda: _load("base", device="gpu"), ValueError, "device"),
    c("pretrained", "device an int", lambda: _load("base", device=0), TypeError, "device"),
    c("pretrained", "all-NaN weights, matching sha256", nan_checkpoint, ValueError, "diverged", "NaN"),
    c("pretrained", "tokenizer name an int", lambda: _tokenizer(3), TypeError, "name"),
    # ---- MEGABYTE ----
    c("megabyte", "float prompt", lambda: megabyte().generate([72.9], 3), TypeError, "prompt_ids"),
    c("megabyte", "str prompt", lambda: megabyte().generate("Hi", 3), TypeError, "prompt_ids"),
    c("megabyte", "prompt id too large", lambda: megabyte().generate([300], 3), ValueError, "ids"),
    c("megabyte", "max_new_tokens -1", lambda: megabyte().generate([72], -1), ValueError, "max_new_tokens"),
    c("megabyte", "temperature NaN", lambda: megabyte().generate([72], 3, temperature=NAN), ValueError, "temperature"),
    c("megabyte", "temperature inf", lambda: megabyte().generate([72], 3, temperature=INF), ValueError, "temperature"),
    c("megabyte", "top_k 0", lambda: megabyte().generate([72], 3, temperature=1.0, top_k=0), ValueError, "top_k"),
    # ---- infinite-former, continuous attention ----
    c("continuous_attention", "sigmas a float", lambda: _basis(8, 0.5), TypeError, "sigmas"),
    c("continuous_attention", "sigmas NaN", lambda: _basis(8, (NAN,)), ValueError, "sigmas"),
    c("continuous_attention", "sigmas inf", lambda: _basis(8, (INF,)), ValueError, "sigmas"),
    c("continuous_attention", "sigmas 0", lambda: _basis(8, (0.0,)), ValueError, "sigmas"),
    c("continuous_attention", "num_basis a float", lambda: _basis(8.0, (0.1,)), TypeError, "num_basis"),
    c("infinite_former", "ridge inf", lambda: memory(ridge=INF), ValueError, "ridge"),
    c("infinite_former", "ridge NaN", lambda: memory(ridge=NAN), ValueError, "ridge"),
    c("infinite_former", "ridge 0", lambda: memory(ridge=0.0), ValueError, "ridge"),
    c("infinite_former", "tau 1", lambda: memory(tau=1.0), ValueError, "tau"),
    c("infinite_former", "fit on NaN", lambda: memory().fit(with_nan(torch.randn(8, 3))), ValueError, "x"),
    c("infinite_former", "fit on inf", lambda: memory().fit(with_nan(torch.randn(8, 3), INF)), ValueError, "x"),
    c("infinite_former", "fit on ints", lambda: memory().fit(torch.ones(8, 3, dtype=torch.long)), TypeError, "x"),
    c("infinite_former", "read at NaN", lambda: fitted().read(with_nan(torch.rand(3))), ValueError, "t"),
    c(
        "infinite_former",
        "update with NaN",
        lambda: fitted().update(with_nan(torch.randn(4, 3))),
        ValueError,
        "x_new",
    ),
    # ---- kernels ----
    c("kernels", "blocked_attention block 0", lambda: _kernel("blocked_attention", block=0), ValueError, "block"),
    c("kernels", "blocked_attention block 2.5", lambda: _kernel("blocked_attention", block=2.5), TypeError, "block"),
    c("kernels", "window 0", lambda: _kernel("blocked_attention", window=0), ValueError, "window"),
    c("kernels", "n_sink a float", lambda: _kernel("blocked_attention", n_sink=1.0), TypeError, "n_sink"),
    c("kernels", "causal an int", lambda: _kernel("blocked_attention", causal=1), TypeError, "causal"),
    c("kernels", "blocked k of another dtype", lambda: _kernel("blocked_attention", k=0), TypeError, "q, k, v"),
    c("kernels", "reference k with one head", lambda: _kernel("reference_attention", k=1), ValueError, "q, k, v"),
    c("kernels", "blocked q a list", lambda: _kernel("blocked_attention", q=[1.0]), TypeError, "q"),
    c("kernels", "block_m 3", lambda: _kernel("block_sparse_attention", block_m=32, block_n=3), ValueError, "block_n"),
    # ---- Λ attention ----
    c("lambda_attention", "n_global negative", lambda: _lambda(q, q, q, -1, 4, 4), ValueError, "n_global"),
    c("lambda_attention", "n_local 0", lambda: _lambda(q, q, q, 1, 0, 4), ValueError, "n_local"),
    c("lambda_attention", "max_distance 0", lambda: _lambda(q, q, q, 1, 4, 0), ValueError, "max_distance"),
    c("lambda_attention", "k of another shape", lambda: _lambda(q, q[:, :1], q, 1, 4, 4), ValueError, "q, k, v"),
    c("lambda_attention", "k of another dtype", lambda: _lambda(q, q.double(), q, 1, 4, 4), TypeError, "q, k, v"),
    c("lambda_attention", "q a list", lambda: _lambda([1.0], q, q, 1, 4, 4), TypeError, "q"),
    c("lambda_attention", "int q", lambda: _lambda(q.long(), q.long(), q.long(), 1, 4, 4), TypeError, "q"),
]  # fmt: skip


def _draw(probs, generator=None):
    from minillm.sampling import draw

    return draw(probs, torch.Generator().manual_seed(0) if generator is None else generator)


def _load(name, **kwargs):
    from minillm.pretrained import load_pretrained

    return load_pretrained(name, **kwargs)


def _tokenizer(name):
    from minillm.pretrained import load_tokenizer

    return load_tokenizer(name)


def _basis(num_basis, sigmas):
    from minillm.continuous_attention import GaussianBasis

    return GaussianBasis(num_basis, sigmas)


def _kernel(name, **kwargs):
    import minillm_kernels

    x = torch.randn(1, 2, 32, 16)
    other = {0: x.double(), 1: x[:, :1]}  # k of another dtype, of one head
    q_, k_ = kwargs.pop("q", x), other[kwargs.pop("k")] if "k" in kwargs else x
    return getattr(minillm_kernels, name)(q_, k_, x, **kwargs)


def _lambda(*args):
    from minillm.lambda_attention import lambda_attention

    return lambda_attention(*args)


# ---- data, probes, viz, sorting, gguf_import ----
BAD = (TypeError, ValueError)  # either is the rule's exception; the message must name the argument


def _batch(**kwargs):
    from minillm.data import sample_batch

    args = {"data": torch.arange(100, dtype=torch.uint8), "batch_size": 2, "seq_len": 8,
            "generator": torch.Generator().manual_seed(0), **kwargs}  # fmt: skip
    return sample_batch(**args)


def _stream_ids(**kwargs):
    from minillm.data import eval_stream

    return eval_stream(**{"n_bytes": 16, **kwargs})


def _data(fn, *args):
    from minillm import data

    return getattr(data, fn)(*args)


def _probe(fn, *args, **kwargs):
    from minillm import probes

    return getattr(probes, fn)(*args, **kwargs)


def _weights(value=None):
    w = torch.softmax(torch.randn(1, 2, 6, 6), dim=-1)
    return w if value is None else with_nan(w, value)


def _scores():
    return torch.randn(1, 2, 6, 6)


def _viz(fn, *args, **kwargs):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from minillm import explorer, viz

    try:
        return getattr(viz if hasattr(viz, fn) else explorer, fn)(*args, **kwargs)
    finally:
        plt.close("all")


def _picture(**kwargs):
    args = {"model": model(), "text": "Hi there", "layer": 0, "head": 0, "mask_mod": masks.causal(), **kwargs}
    return _viz("explorer_picture", **args)


def _sorting(fn, *args, **kwargs):
    from minillm import sorting

    return getattr(sorting, fn)(*args, **kwargs)


def _oracle(**kwargs):
    from minillm.sorting import count_oracle_accuracy, make_sorting_data

    streams, targets = make_sorting_data(4, 32, 6)
    args = {"streams": streams, "targets": targets, **kwargs}
    return count_oracle_accuracy(**args)


@cache
def _sorting_model():
    from minillm.sorting import TINY, build_model

    return build_model(TINY, "stm")


def _sort_accuracy(**kwargs):
    from minillm.sorting import TINY, accuracy, make_sorting_data

    streams, targets = make_sorting_data(4, TINY.length, TINY.vocab)
    args = {"model": _sorting_model(), "streams": streams, "targets": targets, "segment_len": 32, **kwargs}
    return accuracy(**args)


def _sorting_config(**kwargs):
    from minillm.sorting import SortingConfig

    return SortingConfig(**kwargs)


def _train_sorting(**kwargs):
    from minillm.sorting import TINY, train_sorting

    args = {"cfg": replace_(TINY, steps=1, eval_examples=2), "variant": "stm", **kwargs}
    return train_sorting(**args)


def replace_(cfg, **kwargs):
    from dataclasses import replace

    return replace(cfg, **kwargs)


def _gguf_file(arch: str = "llama", fields: bool = False) -> Path:
    """A small GGUF: of another architecture, or llama without its hyper-parameters (fields=False)."""
    import gguf
    import numpy as np

    path = tmp_dir() / "small.gguf"
    writer = gguf.GGUFWriter(str(path), arch)
    if fields:
        for key, value in [
            ("vocab_size", 8),
            ("embedding_length", 4),
            ("block_count", 1),
            ("context_length", 16),
            ("attention.head_count", 2),
            ("attention.head_count_kv", 2),
            ("feed_forward_length", 8),
        ]:
            writer.add_uint32(f"{arch}.{key}", value)
        writer.add_float32(f"{arch}.rope.freq_base", 10000.0)
        writer.add_float32(f"{arch}.attention.layer_norm_rms_epsilon", 1e-5)
    writer.add_tensor("token_embd.weight", np.zeros((8, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _gguf(fn, *args, **kwargs):
    from minillm import gguf_import

    return getattr(gguf_import, fn)(*args, **kwargs)


def _reader(path):
    import gguf

    return gguf.GGUFReader(str(path))


SWEPT = [
    # ---- data ----
    c("data", "kind an int", lambda: _data("load_documents", 3), BAD, "kind"),
    c("data", "kind a list", lambda: _data("load_documents", ["prose"]), BAD, "kind"),
    c("data", "kind unknown", lambda: _data("load_text", "poetry", "test"), ValueError, "kind"),
    c("data", "split None", lambda: _data("load_text", "prose", None), BAD, "split"),
    c("data", "split unknown", lambda: _data("load_bytes", "prose", "dev"), ValueError, "split"),
    c("data", "split a list", lambda: _data("load_bytes", "prose", ["test"]), BAD, "split"),
    c("data", "corpus_sha256 of an unknown kind", lambda: _data("corpus_sha256", "poetry"), ValueError, "kind"),
    c("data", "split_of a float", lambda: _data("split_of", 2.5), TypeError, "index"),
    c("data", "split_of a str", lambda: _data("split_of", "3"), TypeError, "index"),
    c("data", "split_of a bool", lambda: _data("split_of", True), TypeError, "index"),
    c("data", "split_of negative", lambda: _data("split_of", -3), ValueError, "index"),
    c("data", "batch_size 0", lambda: _batch(batch_size=0), ValueError, "batch_size"),
    c("data", "batch_size a float", lambda: _batch(batch_size=2.0), BAD, "batch_size"),
    c("data", "seq_len 0", lambda: _batch(seq_len=0), ValueError, "seq_len"),
    c("data", "seq_len a float", lambda: _batch(seq_len=8.5), TypeError, "seq_len"),
    c("data", "seq_len a str", lambda: _batch(seq_len="8"), TypeError, "seq_len"),
    c("data", "seq_len longer than the data", lambda: _batch(seq_len=500), ValueError, "seq_len"),
    c("data", "data a list", lambda: _batch(data=list(range(100))), TypeError, "data"),
    c("data", "data a float tensor", lambda: _batch(data=torch.rand(100) * 255), TypeError, "data"),
    c("data", "data 2-D", lambda: _batch(data=torch.zeros(10, 10, dtype=torch.uint8)), ValueError, "data"),
    c("data", "data ids past the byte vocabulary", lambda: _batch(data=torch.arange(100) * 5), ValueError, "data"),
    c("data", "generator a seed", lambda: _batch(generator=0), TypeError, "generator"),
    c("data", "prefix of strs", lambda: _batch(prefix=("<s>",)), TypeError, "prefix"),
    c("data", "prefix id too large", lambda: _batch(prefix=(999,)), ValueError, "prefix"),
    c("data", "n_bytes -1", lambda: _stream_ids(n_bytes=-1), ValueError, "n_bytes"),
    c("data", "n_bytes a float", lambda: _stream_ids(n_bytes=16.0), TypeError, "n_bytes"),
    c("data", "n_bytes a bool", lambda: _stream_ids(n_bytes=True), TypeError, "n_bytes"),
    c("data", "n_bytes past the split", lambda: _stream_ids(n_bytes=10**9), ValueError, "n_bytes"),
    c("data", "offset negative", lambda: _stream_ids(offset=-5), ValueError, "offset"),
    c("data", "offset a float", lambda: _stream_ids(offset=2.5), TypeError, "offset"),
    c("data", "offset past the split", lambda: _stream_ids(n_bytes=None, offset=10**9), ValueError, "offset"),
    c("data", "eval_stream kind unknown", lambda: _stream_ids(kind="poetry"), ValueError, "kind"),
    # ---- probes ----
    c("probes", "sink_mass model a str", lambda: _probe("sink_mass", "base", ids(1, 20)), TypeError, "model"),
    c("probes", "sink_mass ids a list", lambda: _probe("sink_mass", model(), [[1] * 20]), TypeError, "ids"),
    c("probes", "sink_mass float ids", lambda: _probe("sink_mass", model(), torch.rand(1, 20)), TypeError, "ids"),
    c("probes", "sink_mass 1-D ids", lambda: _probe("sink_mass", model(), ids(20)), ValueError, "ids"),
    c("probes", "first_query negative", lambda: _probe("sink_mass", model(), ids(1, 20), -1), ValueError,
      "first_query"),
    c("probes", "first_query a float", lambda: _probe("sink_mass", model(), ids(1, 20), 2.5), TypeError,
      "first_query"),
    c("probes", "first_query a bool", lambda: _probe("sink_mass", model(), ids(1, 20), True), TypeError,
      "first_query"),
    c("probes", "first_query past T", lambda: _probe("sink_mass", model(), ids(1, 20), 20), ValueError,
      "first_query"),
    c("probes", "attention_scores layer a float", lambda: _probe("attention_scores", model(), ids(1, 6), 0.5),
      TypeError, "layer"),
    c("probes", "attention_scores layer a bool", lambda: _probe("attention_scores", model(), ids(1, 6), True),
      TypeError, "layer"),
    c("probes", "attention_scores layer too large", lambda: _probe("attention_scores", model(), ids(1, 6), 2),
      ValueError, "layer"),
    c("probes", "attention_scores model a str", lambda: _probe("attention_scores", "base", ids(1, 6), 0), TypeError,
      "model"),
    c("probes", "attention_scores float ids", lambda: _probe("attention_scores", model(), torch.rand(1, 6), 0),
      TypeError, "ids"),
    c("probes", "entropy of a list", lambda: _probe("attention_entropy", [[0.5, 0.5]]), TypeError, "weights"),
    c("probes", "entropy of ints", lambda: _probe("attention_entropy", torch.ones(2, 1, dtype=torch.long)),
      TypeError, "weights"),
    c("probes", "entropy of NaN", lambda: _probe("attention_entropy", _weights(NAN)), ValueError, "weights"),
    c("probes", "entropy of negative weights", lambda: _probe("attention_entropy", torch.tensor([[1.5, -0.5]])),
      ValueError, "weights"),
    c("probes", "entropy of rows that do not sum to 1", lambda: _probe("attention_entropy", torch.rand(3, 4) * 3),
      ValueError, "weights"),
    c("probes", "entropy of a 0-d tensor", lambda: _probe("attention_entropy", torch.tensor(1.0)), ValueError,
      "weights"),
    c("probes", "by_distance reduce unknown", lambda: _probe("by_distance", _scores(), [1], "min"), ValueError,
      "reduce"),
    c("probes", "by_distance a distance past T", lambda: _probe("by_distance", _scores(), [6]), ValueError,
      "distances"),
    c("probes", "by_distance a negative distance", lambda: _probe("by_distance", _scores(), [-1]), ValueError,
      "distances"),
    c("probes", "by_distance a float distance", lambda: _probe("by_distance", _scores(), [1.5]), TypeError,
      "distances"),
    c("probes", "by_distance an int for distances", lambda: _probe("by_distance", _scores(), 3), TypeError,
      "distances"),
    c("probes", "by_distance no distances", lambda: _probe("by_distance", _scores(), []), ValueError, "distances"),
    c("probes", "by_distance scores a list", lambda: _probe("by_distance", [[1.0]], [0]), TypeError, "scores"),
    c("probes", "by_distance 1-D scores", lambda: _probe("by_distance", torch.randn(6), [0]), ValueError, "scores"),
    # ---- viz ----
    c("viz", "tick_positions n a float", lambda: _viz("tick_positions", 2.5), TypeError, "n"),
    c("viz", "tick_positions n a str", lambda: _viz("tick_positions", "3"), TypeError, "n"),
    c("viz", "tick_positions n negative", lambda: _viz("tick_positions", -1), ValueError, "n"),
    c("viz", "tick_positions max_labels 0", lambda: _viz("tick_positions", 5, 0), ValueError, "max_labels"),
    c("viz", "plot_mask n 0", lambda: _viz("plot_mask", masks.causal(), 0), ValueError, "n"),
    c("viz", "plot_mask n a float", lambda: _viz("plot_mask", masks.causal(), 4.5), TypeError, "n"),
    c("viz", "plot_mask without n", lambda: _viz("plot_mask", masks.causal()), ValueError, "n"),
    c("viz", "plot_mask a str", lambda: _viz("plot_mask", "causal", 4), TypeError, "mask"),
    c("viz", "plot_mask a float mask", lambda: _viz("plot_mask", torch.rand(4, 4)), TypeError, "mask"),
    c("viz", "plot_mask a 3-D mask", lambda: _viz("plot_mask", torch.ones(2, 4, 4, dtype=torch.bool)), ValueError,
      "mask"),
    c("viz", "plot_mask ax a str", lambda: _viz("plot_mask", masks.causal(), 4, ax="left"), TypeError, "ax"),
    c("viz", "plot_attention 3-D weights", lambda: _viz("plot_attention", _weights()[0]), ValueError, "weights"),
    c("viz", "plot_attention a list", lambda: _viz("plot_attention", [[0.5, 0.5]]), TypeError, "weights"),
    c("viz", "plot_attention NaN weights", lambda: _viz("plot_attention", _weights(NAN)[0, 0]), ValueError,
      "weights"),
    c("viz", "plot_attention mask of another shape",
      lambda: _viz("plot_attention", _weights()[0, 0], mask=torch.ones(5, 6, dtype=torch.bool)), ValueError, "mask"),
    c("viz", "plot_attention a float mask", lambda: _viz("plot_attention", _weights()[0, 0], mask=torch.rand(6, 6)),
      TypeError, "mask"),
    c("viz", "plot_attention float tokens", lambda: _viz("plot_attention", _weights()[0, 0], [72.5] * 6), TypeError,
      "tokens"),
    c("viz", "plot_attention too few tokens", lambda: _viz("plot_attention", _weights()[0, 0], [72] * 3), ValueError,
      "tokens"),
    c("viz", "plot_attention token id too large", lambda: _viz("plot_attention", _weights()[0, 0], [999] * 6),
      ValueError, "tokens"),
    c("viz", "plot_attention log an int", lambda: _viz("plot_attention", _weights()[0, 0], log=1), TypeError, "log"),
    c("viz", "plot_attention vmin NaN", lambda: _viz("plot_attention", _weights()[0, 0], vmin=NAN), ValueError,
      "vmin"),
    c("viz", "plot_attention vmin above vmax",
      lambda: _viz("plot_attention", _weights()[0, 0], vmin=1.0, vmax=0.0), ValueError, "vmin"),
    c("viz", "plot_attention colorbar a str", lambda: _viz("plot_attention", _weights()[0, 0], colorbar="yes"),
      TypeError, "colorbar"),
    c("viz", "attention_grid a tensor", lambda: _viz("attention_grid", _weights()), BAD, "attn"),
    c("viz", "attention_grid empty", lambda: _viz("attention_grid", []), ValueError, "attn"),
    c("viz", "attention_grid batch_index too large", lambda: _viz("attention_grid", [_weights()], batch_index=1),
      ValueError, "batch_index"),
    c("viz", "attention_grid batch_index a float", lambda: _viz("attention_grid", [_weights()], batch_index=0.0),
      TypeError, "batch_index"),
    c("viz", "attention_grid batch_index negative", lambda: _viz("attention_grid", [_weights()], batch_index=-1),
      ValueError, "batch_index"),
    c("viz", "attention_grid size 0", lambda: _viz("attention_grid", [_weights()], size=0), ValueError, "size"),
    c("viz", "attention_grid size NaN", lambda: _viz("attention_grid", [_weights()], size=NAN), ValueError, "size"),
    c("viz", "attention_grid maps of other head counts",
      lambda: _viz("attention_grid", [_weights(), _weights()[:, :1]]), ValueError, "attn"),
    c("viz", "attention_grid wrong number of layers", lambda: _viz("attention_grid", [_weights()], layers=[0, 1]),
      ValueError, "layers"),
    c("viz", "plot_curves a list", lambda: _viz("plot_curves", [1.0, 2.0]), TypeError, "curves"),
    c("viz", "plot_curves smooth 0", lambda: _viz("plot_curves", {"a": [1.0, 2.0]}, smooth=0), ValueError, "smooth"),
    c("viz", "plot_curves smooth a float", lambda: _viz("plot_curves", {"a": [1.0, 2.0]}, smooth=2.5), TypeError,
      "smooth"),
    c("viz", "plot_curves a str curve", lambda: _viz("plot_curves", {"a": "12"}), TypeError, "curves"),
    c("viz", "plot_curves a 2-D curve", lambda: _viz("plot_curves", {"a": torch.ones(2, 3)}), ValueError, "curves"),
    c("viz", "plot_curves x of another length", lambda: _viz("plot_curves", {"a": [1.0, 2.0]}, x=[0.0]), ValueError,
      "x"),
    c("viz", "plot_curves vlines a str", lambda: _viz("plot_curves", {"a": [1.0, 2.0]}, vlines={"T": "8"}),
      TypeError, "vlines"),
    c("viz", "plot_curves vlines NaN", lambda: _viz("plot_curves", {"a": [1.0, 2.0]}, vlines={"T": NAN}),
      ValueError, "vlines"),
    c("viz", "plot_curves logy an int", lambda: _viz("plot_curves", {"a": [1.0, 2.0]}, logy=1), TypeError, "logy"),
    c("viz", "explorer text None", lambda: _picture(text=None), TypeError, "text"),
    c("viz", "explorer layer a float", lambda: _picture(layer=0.5), TypeError, "layer"),
    c("viz", "explorer layer a bool", lambda: _picture(layer=True), TypeError, "layer"),
    c("viz", "explorer layer too large", lambda: _picture(layer=2), ValueError, "layer"),
    c("viz", "explorer head a float", lambda: _picture(head=1.5), TypeError, "head"),
    c("viz", "explorer head negative", lambda: _picture(head=-1), ValueError, "head"),
    c("viz", "explorer max_bytes a float", lambda: _picture(max_bytes=2.5), TypeError, "max_bytes"),
    c("viz", "explorer max_bytes 0", lambda: _picture(max_bytes=0), ValueError, "max_bytes"),
    c("viz", "explorer mask_mod a str", lambda: _picture(mask_mod="causal"), TypeError, "mask_mod"),
    c("viz", "explorer model a str", lambda: _picture(model="base"), TypeError, "model"),
    c("viz", "draw_explorer_picture of weights", lambda: _viz("draw_explorer_picture", _weights(), None, "t"),
      TypeError, "picture"),
    # ---- sorting ----
    c("sorting", "num_examples 0", lambda: _sorting("make_sorting_data", 0, 8), ValueError, "num_examples"),
    c("sorting", "length a float", lambda: _sorting("make_sorting_data", 2, 8.0), BAD, "length"),
    c("sorting", "vocab 1", lambda: _sorting("make_sorting_data", 2, 8, 1), ValueError, "vocab"),
    c("sorting", "seed a float", lambda: _sorting("make_sorting_data", 2, 8, seed=1.5), TypeError, "seed"),
    c("sorting", "seed negative", lambda: _sorting("make_sorting_data", 2, 8, seed=-1), ValueError, "seed"),
    c("sorting", "generator a seed", lambda: _sorting("make_sorting_data", 2, 8, generator=3), TypeError,
      "generator"),
    c("sorting", "oracle window 0", lambda: _oracle(window=0), ValueError, "window"),
    c("sorting", "oracle window negative", lambda: _oracle(window=-3), ValueError, "window"),
    c("sorting", "oracle window a float", lambda: _oracle(window=2.5), TypeError, "window"),
    c("sorting", "oracle float streams", lambda: _oracle(streams=torch.rand(4, 32)), TypeError, "streams"),
    c("sorting", "oracle 1-D streams", lambda: _oracle(streams=torch.zeros(32, dtype=torch.long)), ValueError,
      "streams"),
    c("sorting", "oracle symbols past the vocabulary", lambda: _oracle(streams=torch.full((4, 32), 9)), ValueError,
      "streams"),
    c("sorting", "oracle targets of another batch", lambda: _oracle(targets=torch.arange(6).repeat(3, 1)),
      ValueError, "targets"),
    c("sorting", "oracle targets a list", lambda: _oracle(targets=[[0, 1]]), TypeError, "targets"),
    c("sorting", "config lr inf", lambda: _sorting_config(lr=INF), ValueError, "lr"),
    c("sorting", "config lr a str", lambda: _sorting_config(lr="1e-3"), TypeError, "lr"),
    c("sorting", "config warmup 0", lambda: _sorting_config(warmup=0), ValueError, "warmup"),
    c("sorting", "config d_model a float", lambda: _sorting_config(d_model=64.0), BAD, "d_model"),
    c("sorting", "config mem_len -1", lambda: _sorting_config(mem_len=-1), ValueError, "mem_len"),
    c("sorting", "config num_basis -1", lambda: _sorting_config(num_basis=-1), ValueError, "num_basis"),
    c("sorting", "config tau 1.5", lambda: _sorting_config(tau=1.5), ValueError, "tau"),
    c("sorting", "config seed a bool", lambda: _sorting_config(seed=True), TypeError, "seed"),
    c("sorting", "config steps 2.5", lambda: _sorting_config(steps=2.5), BAD, "steps"),
    c("sorting", "variant unknown", lambda: _sorting("build_model", _sorting_config(), "lstm"), ValueError,
      "variant"),
    c("sorting", "build_model of a dict", lambda: _sorting("build_model", {"length": 8}, "stm"), TypeError, "cfg"),
    c("sorting", "accuracy batch_size 0", lambda: _sort_accuracy(batch_size=0), ValueError, "batch_size"),
    c("sorting", "accuracy batch_size -1", lambda: _sort_accuracy(batch_size=-1), ValueError, "batch_size"),
    c("sorting", "accuracy segment_len 0", lambda: _sort_accuracy(segment_len=0), ValueError, "segment_len"),
    c("sorting", "accuracy targets of another batch", lambda: _sort_accuracy(targets=torch.zeros(3, 6).long()),
      ValueError, "targets"),
    c("sorting", "accuracy model a str", lambda: _sort_accuracy(model="stm"), TypeError, "model"),
    c("sorting", "train_sorting eval_every -1", lambda: _train_sorting(eval_every=-1), ValueError, "eval_every"),
    c("sorting", "train_sorting eval_every 0", lambda: _train_sorting(eval_every=0), ValueError, "eval_every"),
    c("sorting", "train_sorting device unknown", lambda: _train_sorting(device="gpu"), ValueError, "device"),
    c("sorting", "train_sorting cfg a dict", lambda: _train_sorting(cfg={}), TypeError, "cfg"),
    c("sorting", "train_sorting variant unknown", lambda: _train_sorting(variant="x"), ValueError, "variant"),
    # ---- gguf_import ----
    c("gguf_import", "sha256_file of an int", lambda: _gguf("sha256_file", 3), TypeError, "path"),
    c("gguf_import", "sha256_file of None", lambda: _gguf("sha256_file", None), TypeError, "path"),
    c("gguf_import", "sha256_file of a directory", lambda: _gguf("sha256_file", tmp_dir()), ValueError, "path"),
    c("gguf_import", "fetch_gguf into a str", lambda: _gguf("fetch_gguf", 3), TypeError, "directory"),
    c("gguf_import", "fetch_gguf into a file", lambda: _gguf("fetch_gguf", a_file()), ValueError, "directory"),
    c("gguf_import", "open_gguf of a text file", lambda: _gguf("open_gguf", a_file()), ValueError, "a_file"),
    c("gguf_import", "open_gguf of an empty file", lambda: _gguf("open_gguf", _empty_file()), ValueError, "empty"),
    c("gguf_import", "open_gguf of a missing file", lambda: _gguf("open_gguf", tmp_dir() / "x.gguf"),
      FileNotFoundError, "x.gguf"),
    c("gguf_import", "open_gguf of an int", lambda: _gguf("open_gguf", 3), TypeError, "path"),
    c("gguf_import", "read_config of a path", lambda: _gguf("read_config", _gguf_file()), TypeError, "reader"),
    c("gguf_import", "read_config of another architecture", lambda: _gguf("read_config", _reader(_gguf_file("gpt2"))),
      ValueError, "llama"),
    c("gguf_import", "read_config without hyper-parameters", lambda: _gguf("read_config", _reader(_gguf_file())),
      ValueError, "llama.vocab_size"),
    c("gguf_import", "read_config max_seq_len 0",
      lambda: _gguf("read_config", _reader(_gguf_file(fields=True)), max_seq_len=0), ValueError, "max_seq_len"),
    c("gguf_import", "read_config max_seq_len a float",
      lambda: _gguf("read_config", _reader(_gguf_file(fields=True)), max_seq_len=8.0), TypeError, "max_seq_len"),
    c("gguf_import", "read_state_dict with missing tensors",
      lambda: _gguf("read_state_dict", _reader(_gguf_file(fields=True)), _gguf("read_config", _reader(
          _gguf_file(fields=True)))), ValueError, "missing", "blk.0.attn_q.weight"),
    c("gguf_import", "read_state_dict config a dict", lambda: _gguf("read_state_dict", _reader(_gguf_file()), {}),
      TypeError, "config"),
    c("gguf_import", "read_tokenizer without a vocabulary", lambda: _gguf("read_tokenizer", _reader(_gguf_file())),
      ValueError, "tokenizer.ggml.tokens"),
    c("gguf_import", "unpermute n_heads 0", lambda: _gguf("unpermute", torch.randn(8, 4), 0), ValueError, "n_heads"),
    c("gguf_import", "unpermute n_heads not dividing", lambda: _gguf("unpermute", torch.randn(8, 4), 3), ValueError,
      "n_heads"),
    c("gguf_import", "unpermute an odd head dim", lambda: _gguf("unpermute", torch.randn(6, 4), 2), ValueError,
      "head dim"),
    c("gguf_import", "unpermute a 1-D w", lambda: _gguf("unpermute", torch.randn(8), 2), ValueError, "w"),
    c("gguf_import", "unpermute n_heads a float", lambda: _gguf("unpermute", torch.randn(8, 4), 2.0), TypeError,
      "n_heads"),
]  # fmt: skip


def _empty_file() -> Path:
    path = tmp_dir() / "empty.gguf"
    path.write_bytes(b"")
    return path


@pytest.mark.parametrize("case", SWEPT, ids=[f"{case.module}: {case.label}" for case in SWEPT])
def test_data_probes_viz_sorting_and_gguf_refuse_bad_input(case):
    test_bad_input_raises_an_error_that_names_the_argument(case)


# ---- attention: NaN / inf in q, k, v and query rows that see no key, on every path ----
# A bad key at index 40 of 48: under a sink + window mask rows 0-39 never attend to it, yet before
# the rule the kernel's rows 32-39 and the reference's rows 0-39 came out NaN (0 * NaN in weights @ V).

NAN_AT = (0, 1, 40, 3)  # (b, h, t, d) of the bad entry: a late key that most rows never see


def _attention_paths() -> dict[str, Callable[[torch.Tensor, torch.Tensor, torch.Tensor], object]]:
    """Every entry point that takes q, k, v (B, H, T, D), called on a sink + window or causal mask."""
    import minillm_kernels
    from minillm.attention import AttentionStep, distance_limit, reference_attention, rope_attention
    from minillm.lambda_attention import lambda_attention, topk_middle_attention

    T = 48
    pos = torch.arange(T)
    window = masks.materialize(masks.sink_window(2, 8), T)
    paths = {
        "reference_attention": lambda q, k, v: reference_attention(q, k, v, window),
        "rope_attention (SDPA)": lambda q, k, v: rope_attention(q, k, v, AttentionStep(pos, pos, window), 1e4),
        "rope_attention (weights)": lambda q, k, v: rope_attention(q, k, v, AttentionStep(pos, pos, window), 1e4, True),
        "rope_attention (causal)": lambda q, k, v: rope_attention(
            q, k, v, AttentionStep(pos, pos, is_causal=True), 1e4
        ),
        "rope_attention (far pairs)": lambda q, k, v: rope_attention(
            q, k, v, AttentionStep(pos, pos, window, **distance_limit(pos, pos, 4)), 1e4
        ),
        "lambda_attention": lambda q, k, v: lambda_attention(q, k, v, 2, 8, 8),
        "topk_middle_attention": lambda q, k, v: topk_middle_attention(q[:, :, 40:44], k, v, pos[40:44], 2, 8, 8, 2, 4),
        "minillm_kernels.reference_attention": lambda q, k, v: minillm_kernels.reference_attention(
            q, k, v, n_sink=2, window=8
        ),
        "minillm_kernels.blocked_attention": lambda q, k, v: minillm_kernels.blocked_attention(
            q, k, v, n_sink=2, window=8, block=16
        ),
    }
    if minillm_kernels.TRITON_AVAILABLE:
        paths["minillm_kernels.block_sparse_attention"] = lambda q, k, v: minillm_kernels.block_sparse_attention(
            q, k, v, n_sink=2, window=8
        )
    return paths


def _qkv(bad: str = "", value: float = NAN) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    qkv = {name: torch.randn(1, 2, 48, 16, generator=g) for name in "qkv"}
    if bad:
        qkv[bad][NAN_AT] = value
    return qkv["q"], qkv["k"], qkv["v"]


ATTENTION_PATHS = list(_attention_paths())
NONFINITE = [
    c("attention", f"{path}: {name} holds {value}", lambda p=path, n=name, x=value: _attention_paths()[p](*_qkv(n, x)),
      ValueError, name, "finite")
    for path in ATTENTION_PATHS
    for name in "qkv"
    for value in (NAN, INF, -INF)
]  # fmt: skip


def _empty_row_mask_mod(b, h, q, k):
    return (q >= k) & (q != 5)  # row 5 sees nothing, not even itself


EMPTY_ROWS = [
    c("attention", "mask_mod with an empty row (SDPA)", lambda: forward(ids(1, 8), mask_mod=_empty_row_mask_mod),
      ValueError, "mask_mod", "row 5"),
    c("attention", "mask_mod with an empty row (return_attn)",
      lambda: forward(ids(1, 8), mask_mod=_empty_row_mask_mod, return_attn=True), ValueError, "mask_mod", "row 5"),
    c("attention", "mask_mod with an empty row (distance limit)",
      lambda: forward(ids(1, 8), mask_mod=_empty_row_mask_mod, max_distance=2), ValueError, "mask_mod", "row 5"),
    c("attention", "mask_mod that sees only the future",
      lambda: forward(mask_mod=lambda b, h, q, k: k > q), ValueError, "mask_mod", "row 3"),
    c("attention", "reference_attention mask with an empty row",
      lambda: _reference(masks.materialize(_empty_row_mask_mod, 8)), ValueError, "mask", "row 5"),
    c("attention", "reference_attention mask (B, H, T, S) with an empty row",
      lambda: _reference(masks.materialize(_empty_row_mask_mod, 8).expand(1, 2, 8, 8)), ValueError, "mask", "row 5"),
    c("attention", "reference_attention float mask", lambda: _reference(torch.ones(8, 8)), TypeError, "mask"),
    c("attention", "AttentionStep mask with an empty row",
      lambda: _step(torch.arange(8), torch.arange(8), masks.materialize(_empty_row_mask_mod, 8)), ValueError, "mask",
      "row 5"),
    c("attention", "AttentionStep mask of the wrong shape",
      lambda: _step(torch.arange(8), torch.arange(8), torch.ones(8, 7, dtype=torch.bool)), ValueError, "mask"),
    c("attention", "AttentionStep causal with more queries than keys",
      lambda: _step(torch.arange(8), torch.arange(4), is_causal=True), ValueError, "is_causal"),
    c("attention", "rope_attention positions that do not match q", lambda: _rope(torch.arange(7)), ValueError,
      "positions"),
    c("attention", "rope_attention step a mask", lambda: _rope(None), TypeError, "step"),
    c("attention", "rope_attention k with another head dim",
      lambda: _rope(torch.arange(8), k=torch.randn(1, 2, 8, 4)), ValueError, "q, k, v"),
]  # fmt: skip


def _lambda_forward(**kwargs):
    from minillm.lambda_attention import lambda_forward

    args = {"model": model(), "ids": ids(1, 12), "n_global": 2, "n_local": 4, "max_distance": 4, **kwargs}
    return lambda_forward(**args)


def _topk(**kwargs):
    from minillm.lambda_attention import topk_middle_attention

    x = torch.randn(1, 2, 12, 8)
    args = {"q": x[:, :, -2:], "k": x, "v": x, "q_pos": torch.arange(10, 12), "n_global": 2, "n_local": 4,
            "max_distance": 4, "top_k": 2, "insert_at": 2, **kwargs}  # fmt: skip
    return topk_middle_attention(**args)


LAMBDA = [
    c("lambda_attention", "block_size 0", lambda: _lambda(q, q, q, 1, 4, 4, 1e4, 0), ValueError, "block_size"),
    c("lambda_attention", "block_size -1", lambda: _lambda(q, q, q, 1, 4, 4, 1e4, -1), ValueError, "block_size"),
    c("lambda_attention", "block_size a float", lambda: _lambda(q, q, q, 1, 4, 4, 1e4, 2.5), TypeError, "block_size"),
    c("lambda_attention", "rope_base NaN", lambda: _lambda(q, q, q, 1, 4, 4, NAN), ValueError, "rope_base"),
    c("lambda_attention", "rope_base a str", lambda: _lambda(q, q, q, 1, 4, 4, "1e4"), TypeError, "rope_base"),
    c("lambda_attention", "topk q_pos floats", lambda: _topk(q_pos=torch.tensor([10.0, 11.0])), TypeError, "q_pos"),
    c("lambda_attention", "topk q_pos too short", lambda: _topk(q_pos=torch.tensor([11])), TypeError, "q_pos"),
    c("lambda_attention", "topk q_pos past the keys", lambda: _topk(q_pos=torch.tensor([11, 12])), ValueError,
      "q_pos"),
    c("lambda_attention", "topk k of another head dim", lambda: _topk(k=torch.randn(1, 2, 12, 4)), ValueError,
      "q, k, v"),
    c("lambda_attention", "topk return_weights an int", lambda: _topk(return_weights=1), TypeError, "return_weights"),
    c("lambda_attention", "topk top_k a float", lambda: _topk(top_k=2.0), TypeError, "top_k"),
    c("lambda_attention", "lambda_forward model a str", lambda: _lambda_forward(model="base"), TypeError, "model"),
    c("lambda_attention", "lambda_forward float ids", lambda: _lambda_forward(ids=torch.rand(1, 12)), TypeError,
      "ids"),
    c("lambda_attention", "lambda_forward ids too large", lambda: _lambda_forward(ids=torch.full((1, 12), 999)),
      ValueError, "ids"),
    c("lambda_attention", "lambda_forward from_layer -1", lambda: _lambda_forward(top_k=2, from_layer=-1), ValueError,
      "from_layer"),
    c("lambda_attention", "lambda_forward first_query a float", lambda: _lambda_forward(first_query=3.0), TypeError,
      "first_query"),
    c("lambda_attention", "lambda_forward mode unknown", lambda: _lambda_forward(mode="exact"), ValueError, "mode"),
    c("lambda_attention", "lambda_forward n_local 0", lambda: _lambda_forward(n_local=0), ValueError, "n_local"),
    c("lambda_attention", "lambda_forward return_weights a str", lambda: _lambda_forward(return_weights="yes"),
      TypeError, "return_weights"),
]  # fmt: skip


def _reference(mask):
    from minillm.attention import reference_attention

    x = torch.randn(1, 2, 8, 16)
    return reference_attention(x, x, x, mask)


def _step(q_pos, k_pos, mask=None, is_causal=False):
    from minillm.attention import AttentionStep

    return AttentionStep(q_pos, k_pos, mask, is_causal)


def _rope(positions, k=None):
    from minillm.attention import AttentionStep, rope_attention

    x = torch.randn(1, 2, 8, 8)
    step = positions if positions is None else AttentionStep(positions, positions, is_causal=True)
    return rope_attention(x, x if k is None else k, x, step, 1e4)


ATTENTION_CASES = NONFINITE + EMPTY_ROWS + LAMBDA


@pytest.mark.parametrize("case", ATTENTION_CASES, ids=[f"{c.module}: {c.label}" for c in ATTENTION_CASES])
def test_attention_refuses_nonfinite_inputs_and_rows_without_keys(case):
    test_bad_input_raises_an_error_that_names_the_argument(case)


@pytest.mark.parametrize("path", ATTENTION_PATHS)
def test_the_nonfinite_message_points_at_the_entry(path):
    """The error names the tensor and the index, so a learner finds the bad entry."""
    with pytest.raises(ValueError, match=r"v must be finite, but v\[0, 1, 40, 3\] is nan"):
        _attention_paths()[path](*_qkv("v"))


@pytest.mark.parametrize("path", ATTENTION_PATHS)
def test_huge_finite_inputs_whose_sum_overflows_still_run(path):
    """The check sums first (cheap) and looks closer only when the sum is not finite: 3e38 + 3e38 is
    inf in float32 although every entry is finite, so a sum alone would refuse good input."""
    q, k, v = _qkv()
    v = v.clone()
    v[0, 0, :4, 0] = 3e38  # the sum of v overflows; every entry is finite
    out = _attention_paths()[path](q * 0, k * 0, v)  # q = 0: uniform weights, no overflow in the scores
    out = out[0] if isinstance(out, tuple) else out
    assert out.shape[-1] == 16


def test_the_explicit_reference_still_takes_any_leading_dims_and_value_width():
    """Chapter 01 calls reference_attention on (T, D) tensors: the checks must not refuse good input."""
    from minillm.attention import reference_attention

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(6, 8, generator=g) for _ in range(3))
    causal = masks.materialize(masks.causal(), 6)
    out, weights = reference_attention(q, k, v, causal)
    out4, _ = reference_attention(q[None, None], k[None, None], v[None, None], causal)
    torch.testing.assert_close(out, out4[0, 0])
    wide, _ = reference_attention(q, k, torch.randn(6, 3, generator=g), causal)
    assert wide.shape == (6, 3) and torch.allclose(weights.sum(-1), torch.ones(6))
    with pytest.raises(ValueError, match="q, k, v must"):
        reference_attention(q, k[:, :4], v)


def test_the_empty_row_rule_is_the_same_on_the_sdpa_and_explicit_paths():
    """Before the rule the SDPA path gave finite logits for a row that sees no key and the explicit
    path (return_attn=True) NaN; now both refuse, and a mask whose rows all see a key runs on both."""
    x = ids(1, 8)
    for kwargs in ({}, {"return_attn": True}, {"max_distance": 2}):
        with pytest.raises(ValueError, match="mask_mod gives query row 5 no key"):
            model()(x, mask_mod=_empty_row_mask_mod, **kwargs)
    fine = masks.sliding_window(2)
    fast, explicit = model()(x, mask_mod=fine).logits, model()(x, mask_mod=fine, return_attn=True).logits
    torch.testing.assert_close(fast, explicit, rtol=1e-5, atol=1e-5)


def test_every_kernel_mask_lets_each_row_see_itself():
    """The kernels and the blockwise Λ take no mask of their own, only these families: each row sees
    its own key, so no row can be empty there."""
    from minillm_kernels.block_map import mask_mod_for

    for n_sink, window, causal in [(0, None, True), (0, None, False), (2, 1, True), (0, 5, True), (3, 8, True)]:
        assert masks.materialize(mask_mod_for(n_sink, window, causal), 20).diagonal().all()
    for n_global, n_local in [(0, 1), (2, 1), (4, 16)]:
        assert masks.materialize(masks.lambda_shaped(n_global, n_local), 20).diagonal().all()


# ---- the same rules swept over every size, count, scale and id argument with generic bad values ----


def _sweep_int(module: str, name: str, call: Callable[[object], object], minimum: int, none_ok: bool = False):
    bad = [minimum - 1, minimum - 10, 2.5, True, "3", NAN] + ([] if none_ok else [None])
    return [c(module, f"{name}={v!r}", lambda v=v: call(v), (TypeError, ValueError), name) for v in bad]


def _sweep_float(module: str, name: str, call: Callable[[object], object], below: float, none_ok: bool = False):
    bad = [below, NAN, INF, -INF, "1.0", True] + ([] if none_ok else [None])
    return [c(module, f"{name}={v!r}", lambda v=v: call(v), (TypeError, ValueError), name) for v in bad]


def _sweep_ids(module: str, name: str, call: Callable[[object], object]):
    bad = [
        [72.0, 105.0],
        "Hi",
        [True, 1],
        [[72, 105]],
        torch.tensor([0.5, 1.5]),
        torch.tensor([1, 0]).bool(),
        [72, -1],
        [72, 10**6],
    ]
    return [c(module, f"{name}={v!r}", lambda v=v: call(v), (TypeError, ValueError), name) for v in bad]


SWEEP = [
    *_sweep_int("masks", "window", masks.sliding_window, 1),
    *_sweep_int("masks", "n_sink", lambda v: masks.sink_window(v, 4), 0),
    *_sweep_int("masks", "n_local", lambda v: masks.lambda_shaped(2, v), 1),
    *_sweep_int("masks", "q_len", lambda v: masks.materialize(masks.causal(), v), 1),
    *_sweep_int("streaming", "chunk_size", lambda v: stream(chunk_size=v), 1),
    *_sweep_int("streaming", "batch_size", lambda v: recompute(batch_size=v), 1),
    *_sweep_int("streaming", "window", lambda v: recompute(window=v), 1),
    *_sweep_int("decoding", "max_new_tokens", lambda v: decode_with("sample", max_new_tokens=v), 0),
    *_sweep_int("decoding", "top_k", lambda v: decode_with("sample", top_k=v), 1, none_ok=True),
    *_sweep_int("decoding", "seed", lambda v: decode_with("sample", seed=v), 0, none_ok=True),
    *_sweep_int("decoding", "window", lambda v: decode_with("lookahead_decode", window=v), 1),
    *_sweep_int("decoding", "ngram", lambda v: decode_with("lookahead_decode", ngram=v), 2),
    *_sweep_int("config", "d_model", lambda v: ModelConfig(d_model=v), 1),
    *_sweep_int("config", "n_layers", lambda v: ModelConfig(n_layers=v), 1),
    *_sweep_int("config", "max_seq_len", lambda v: ModelConfig(max_seq_len=v), 1),
    *_sweep_int("train", "batch_size", lambda v: train_config(batch_size=v), 1),
    *_sweep_int("train", "warmup", lambda v: train_config(warmup=v), 0),
    *_sweep_int("train", "stop_at", lambda v: train_with(stop_at=v), 1, none_ok=True),
    *_sweep_int("megabyte", "max_new_tokens", lambda v: megabyte().generate([72], v), 0),
    *_sweep_int("continuous_attention", "num_basis", lambda v: _basis(v, (0.1,)), 1),
    *_sweep_int("kernels", "block", lambda v: _kernel("blocked_attention", block=v), 1),
    *_sweep_float("decoding", "temperature", lambda v: decode_with("sample", temperature=v), -0.5),
    *_sweep_float("config", "rope_base", lambda v: ModelConfig(rope_base=v), 1.0),
    *_sweep_float("config", "norm_eps", lambda v: ModelConfig(norm_eps=v), 0.0),
    *_sweep_float("train", "lr", lambda v: train_config(lr=v), -1e-3),
    *_sweep_float("train", "max_minutes", lambda v: train_with(max_minutes=v), -1.0, none_ok=True),
    *_sweep_float("infinite_former", "ridge", lambda v: memory(ridge=v), 0.0),
    *_sweep_ids("tokenizer", "ids", tok.decode),
    *_sweep_ids("streaming", "ids", lambda v: stream(ids=v)),
    *_sweep_ids("decoding", "prompt_ids", lambda v: decode_with("greedy", prompt_ids=v)),
    *_sweep_ids("megabyte", "ids", lambda v: megabyte().generate(v, 2)),
]


@pytest.mark.parametrize("case", SWEEP, ids=[f"{case.module}: {case.label}" for case in SWEEP])
def test_every_argument_refuses_generic_bad_values(case):
    test_bad_input_raises_an_error_that_names_the_argument(case)


def classify(case: Case) -> str:
    """clear, obscure or silent (see the module's docstring)."""
    try:
        case.call()
    except case.error as e:
        return "clear" if all(name in str(e) for name in case.names) else "obscure"
    except Exception:
        return "obscure"
    return "silent"


@pytest.mark.parametrize("case", CASES, ids=[f"{case.module}: {case.label}" for case in CASES])
def test_bad_input_raises_an_error_that_names_the_argument(case):
    with pytest.raises(case.error) as raised:
        case.call()
    message = str(raised.value)
    for name in case.names:
        assert name in message, f"the message does not name {name!r}: {message}"


def test_the_catalogue_is_large_and_covers_every_module():
    assert len(CASES) >= 120
    assert len({(case.module, case.label) for case in CASES}) == len(CASES)
    assert len({case.module for case in CASES}) >= 15


# ---- behaviour around the errors: what valid input still does, and what a fault leaves behind ----


def test_the_bpe_tokenizer_applies_the_same_rules():
    from minillm.pretrained import cache_dir, load_tokenizer

    if not (cache_dir() / "smollm2-135m.json").exists():
        pytest.skip("SmolLM2 is not in the cache (python -m minillm.pretrained fetch smollm2-135m)")
    bpe = load_tokenizer("smollm2-135m")
    for call, error, name in [
        (lambda: bpe.decode([72.9]), TypeError, "ids"),
        (lambda: bpe.decode("123"), TypeError, "ids"),
        (lambda: bpe.decode([bpe.vocab_size]), ValueError, "ids"),
        (lambda: bpe.encode("a\ud800"), ValueError, "text"),
        (lambda: bpe.encode(b"a"), TypeError, "text"),
        (lambda: bpe.encode("a", bos=1), TypeError, "bos"),
    ]:
        with pytest.raises(error, match=name):
            call()
    assert bpe.decode(bpe.encode("Hello there")) == "Hello there"


def test_a_temperature_that_underflows_is_refused_and_the_smallest_allowed_samples_the_argmax():
    from minillm.decoding import greedy, sample
    from minillm.sampling import MIN_TEMPERATURE

    prompt = [256, 72, 105]
    with pytest.raises(ValueError, match="temperature 1e-320 underflows"):
        sample(model(), prompt, 6, temperature=1e-320)  # it used to act as greedy without a word
    assert sample(model(), prompt, 6, temperature=MIN_TEMPERATURE).tokens == greedy(model(), prompt, 6).tokens


def test_token_ids_from_a_tensor_still_decode():
    t = torch.tensor([72, 105])
    assert tok.decode(t) == tok.decode(list(t)) == tok.decode([72, 105]) == "Hi"


def test_decode_accepts_numpy_integers():
    np = pytest.importorskip("numpy")
    assert tok.decode(np.array([72, 105])) == "Hi"


def test_positions_may_repeat_and_start_anywhere():
    x = ids(1, 4)
    shifted = model()(x, positions=torch.arange(4) + 7).logits
    torch.testing.assert_close(shifted, model()(x).logits, rtol=1e-4, atol=1e-4)  # RoPE is relative
    model()(x, positions=torch.tensor([0, 1, 1, 2]))


def test_a_corrupt_state_file_names_itself_and_the_fix(tmp_path):
    (tmp_path / "state.pt").write_bytes(b"\x80\x02 truncated")
    with pytest.raises(ValueError) as raised:
        train_with(out_dir=tmp_path)
    assert str(tmp_path / "state.pt") in str(raised.value) and "--no-resume" in str(raised.value)


def test_a_failing_save_says_why_and_a_rerun_resumes_with_a_consistent_log(tmp_path, monkeypatch):
    import json
    from dataclasses import replace

    from minillm import train as train_module

    cfg = replace(train_module.PRESETS["tiny"], steps=4, eval_every=1, save_every=2)
    real_save = torch.save
    calls = []

    def disk_full_on_second_save(obj, path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(train_module.torch, "save", disk_full_on_second_save)
    with pytest.raises(OSError, match="could not save the training state at step 4") as raised:
        train_module.train(cfg, tmp_path, progress=False)
    assert "unchanged" in str(raised.value) and not (tmp_path / "state.tmp").exists()
    monkeypatch.setattr(train_module.torch, "save", real_save)
    assert torch.load(tmp_path / "state.pt", weights_only=False)["step"] == 2
    resumed = train_module.train(cfg, tmp_path, progress=False)
    steps = [json.loads(line)["step"] for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]  # no step logged twice
    uninterrupted = train_module.train(cfg, tmp_path / "fresh", progress=False)
    for a, b in zip(resumed.parameters(), uninterrupted.parameters()):
        torch.testing.assert_close(a, b)


def test_ctrl_c_saves_and_the_run_resumes_exactly(tmp_path, monkeypatch, capsys):
    from dataclasses import replace

    from minillm import train as train_module

    cfg = replace(train_module.PRESETS["tiny"], steps=6, eval_every=3, save_every=100)
    real_batch = train_module.get_batch
    drawn = []

    def interrupt_at_the_fourth_batch(*args):
        drawn.append(1)
        if len(drawn) == 4:
            raise KeyboardInterrupt
        return real_batch(*args)

    monkeypatch.setattr(train_module, "get_batch", interrupt_at_the_fourth_batch)
    with pytest.raises(KeyboardInterrupt):
        train_module.train(cfg, tmp_path, progress=False)
    assert "run the same command again to resume" in capsys.readouterr().out
    assert torch.load(tmp_path / "state.pt", weights_only=False)["step"] == 3
    monkeypatch.setattr(train_module, "get_batch", real_batch)
    resumed = train_module.train(cfg, tmp_path, progress=False)
    uninterrupted = train_module.train(cfg, tmp_path / "fresh", progress=False)
    for a, b in zip(resumed.parameters(), uninterrupted.parameters()):
        torch.testing.assert_close(a, b)


def test_an_unwritable_run_directory_is_refused_before_training(tmp_path):
    from minillm.train import main

    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SystemExit), contextlib.redirect_stderr(io.StringIO()) as err:
        main(["--preset", "tiny", "--out", str(blocker / "run")])
    assert "--out" in err.getvalue() and "not a writable directory" in err.getvalue()


def test_an_unwritable_checkpoint_directory_is_refused_before_training(tmp_path, monkeypatch):
    from minillm import pretrained
    from minillm.train import main

    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setattr(pretrained, "CHECKPOINT_DIR", blocker / "checkpoints")
    with pytest.raises(SystemExit), contextlib.redirect_stderr(io.StringIO()) as err:
        main(["--preset", "tiny", "--out", str(tmp_path / "run"), "--checkpoint", "x"])
    assert "checkpoint directory" in err.getvalue() and not (tmp_path / "run" / "state.pt").exists()


def test_the_progress_bar_ends_at_stop_at(tmp_path, monkeypatch):
    from minillm import train as train_module

    totals = []
    real_tqdm = train_module.tqdm
    monkeypatch.setattr(train_module, "tqdm", lambda **kw: totals.append(kw["total"]) or real_tqdm(**kw))
    train_with(out_dir=tmp_path, stop_at=1)
    assert totals == [1]


def test_triton_imported_before_kernels_still_runs_in_the_interpreter():
    """`import triton` (or torch.compile, or torch.utils.flop_counter) before `import minillm_kernels` used to
    break every interpreted kernel; kernels now switches Triton's library to the interpreter."""
    pytest.importorskip("triton")
    if torch.cuda.is_available():
        pytest.skip("on a GPU Triton compiles; the interpreter is not involved")
    code = (
        "import triton, torch, minillm_kernels\n"
        "q = torch.randn(1, 2, 40, 16, requires_grad=True)\n"
        "out = minillm_kernels.block_sparse_attention(q, q, q, n_sink=2, window=8)\n"
        "ref = minillm_kernels.reference_attention(q, q, q, n_sink=2, window=8)\n"
        "g, = torch.autograd.grad(out.sum(), q); r, = torch.autograd.grad(ref.sum(), q)\n"
        "print(float((out - ref).abs().max()), float((g - r).abs().max()))\n"
    )
    env = {k: v for k, v in __import__("os").environ.items() if k != "TRITON_INTERPRET"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert max(float(x) for x in out.stdout.split()) < 1e-4, out.stdout


if __name__ == "__main__":  # counts per class, by module
    torch.set_num_threads(1)
    by_module: dict[str, Counter] = {}
    for case in CASES + SWEEP + ATTENTION_CASES + SWEPT:
        verdict = classify(case)
        by_module.setdefault(case.module, Counter())[verdict] += 1
        if verdict != "clear":
            print(f"{verdict:8} {case.module}: {case.label}")
    total = Counter()
    for module, counts in by_module.items():
        total += counts
        print(f"{module:22} clear {counts['clear']:3}  obscure {counts['obscure']:3}  silent {counts['silent']:3}")
    print(f"{'all':22} clear {total['clear']:3}  obscure {total['obscure']:3}  silent {total['silent']:3}")
