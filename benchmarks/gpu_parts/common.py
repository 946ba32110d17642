"""What the three parts of `benchmarks/gpu.py` share: time budgets, timers, the device's facts, and
the loop over models of the decoding and streaming parts.

A GPU is lent for minutes, so every measurement runs under a `Budget`: once a part has spent its
seconds, the rest of its configurations are recorded as skipped (with the reason) instead of run.
Timers report medians with the warm-up excluded; in a dry run they still call the function (so the
code path runs) but return None, because a CPU at tiny sizes says nothing about a GPU.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

from .models import load_model

# Dense tensor-core peaks in TFLOP/s for float16 / bfloat16 (no 2:4 sparsity), from NVIDIA's data
# sheets. Matched against torch.cuda.get_device_name by substring, most specific first.
PEAK_TFLOPS = (
    ("H200 NVL", 835.0),
    ("H200", 989.0),
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),  # SXM ("NVIDIA H100 80GB HBM3")
    ("A100", 312.0),
)


def peak_tflops(device_name: str) -> float | None:
    """The float16/bfloat16 dense peak of a GPU known by name, None for any other device."""
    for key, peak in PEAK_TFLOPS:
        if key in device_name:
            return peak
    return None


class Budget:
    """Seconds a part may spend; `spent()` is checked before each configuration starts.

    A configuration that has started runs to its end (a compile cannot be interrupted), so a part
    may overrun by one configuration; the budgets leave room for that.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def spent(self) -> bool:
        return self.elapsed() >= self.seconds

    def reason(self) -> str:
        return f"skipped: the part's time budget of {self.seconds:.0f} s was spent"


def bench_ms(fn: Callable[[], object], timed: bool) -> float | None:
    """Median milliseconds of fn() by `triton.testing.do_bench` (warm-up excluded), or None untimed."""
    if not timed:
        fn()  # run the path once, claim nothing
        return None
    import triton.testing

    return float(triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median"))


def median_call_ms(fn: Callable[[int], object], n: int, warmup: int, timed: bool) -> float | None:
    """Median milliseconds of fn(i) over calls i = warmup .. warmup + n - 1, timed one by one with
    CUDA events (each call is one token: do_bench would repeat the same token). None untimed."""
    for i in range(warmup):
        fn(i)
    if not timed:
        for i in range(warmup, warmup + n):
            fn(i)
        return None
    times = []
    for i in range(warmup, warmup + n):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn(i)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def wall_s(fn: Callable[[], object], repeats: int, cuda: bool) -> tuple[object, float]:
    """(fn's result, median wall-clock seconds over `repeats` calls after one warm-up call).

    For whole decodes, whose many small launches and host-side logic belong to the cost.
    """
    result = fn()
    times = []
    for _ in range(repeats):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        result = fn()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return result, statistics.median(times)


def for_each_model(
    part: str, settings: dict, budget: Budget, save: Callable[[dict], None],
    measure: Callable[[str, torch.nn.Module, object, dict, Callable[[], None]], None],
) -> dict:  # fmt: skip
    """{"models": {name: entry}} over settings["models"], saved after each model.

    A model that cannot load, or that comes after the budget is spent, gets {"skipped": why};
    otherwise `measure(name, model, tokenizer, entry, save_now)` fills its (empty) entry, and may call
    save_now() to write the json while it goes, so that a cut-off run keeps what it measured.
    """
    device = torch.device(settings["device"])
    result: dict = {"models": {}}
    for name in settings["models"]:
        loaded = load_model(name, device)
        if isinstance(loaded, str):
            result["models"][name] = {"skipped": loaded}
        elif budget.spent():
            result["models"][name] = {"skipped": budget.reason()}
        else:
            entry = result["models"][name] = {}
            measure(name, *loaded, entry, lambda: save(result))
        save(result)
        print(f"  {part} {name}: {result['models'][name].get('skipped', 'done')}", flush=True)
    return result
