"""benchmarks/gpu.py: the dry run writes every part with passing checks; the checks catch wrong kernels."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

import minillm_kernels
from minillm import masks

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import gpu  # noqa: E402
from gpu_parts import kernel as kernel_part  # noqa: E402
from gpu_parts.common import Budget, peak_tflops  # noqa: E402

needs_cpu = pytest.mark.skipif(torch.cuda.is_available(), reason="the dry run's sizes and dtypes are the CPU's")


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("gpu_dry_run")
    path = gpu.main(["--dry-run", "--out", str(out)])
    return gpu.load_results(path), out


@needs_cpu
def test_dry_run_writes_every_part_marked_dry_without_timing_claims(dry_run):
    results, out = dry_run
    assert results["dry_run"] is True and results["triton_interpreted"] is True
    assert set(results["parts"]) == {"kernel", "decoding", "streaming"}
    assert all(p["status"] == "done" and "settings" in p and "budget_s" in p for p in results["parts"].values())
    assert {"gpu", "driver", "torch", "triton", "peak_tflops_16bit"} <= set(results["machine"])
    for part in ("kernel", "decoding", "streaming"):
        assert (out / f"gpu_{part}.png").stat().st_size > 0
    timings = [r[key]["ms"] for r in results["parts"]["kernel"]["rows"] for key in ("forward", "forward_backward")
               if "ms" in r.get(key, {})]  # fmt: skip
    assert timings and all(ms is None for ms in timings)
    assert "DRY RUN" in gpu.summary(results)


@needs_cpu
def test_dry_run_checks_every_kernel_row_against_the_reference(dry_run):
    kernel = dry_run[0]["parts"]["kernel"]
    settings, rows = kernel["settings"], kernel["rows"]
    keys = {(r["mask"], r["T"], r["impl"]) for r in rows}
    assert keys == {(m, T, i) for m in ("sink_window", "lambda") for T in settings["lengths"]
                    for i in ("triton", "flex", "sdpa_dense")}  # fmt: skip
    assert kernel["all_checks_passed"] is True
    for r in rows:
        if r["impl"] == "sdpa_dense" and r["T"] > settings["dense_max_t"]:
            assert r["skipped"].startswith("skipped: T > dense_max_t")
            continue
        assert r["check"]["passed"] is True, r
        if r["impl"] == "triton":  # forward and all three gradients were compared
            assert set(r["check"]["max_rel_err"]) == {"out", "dq", "dk", "dv"}
            assert r["visited_tiles"] <= r["causal_tiles"]
    longest = [r for r in rows if r["T"] == max(settings["lengths"]) and r["impl"] == "triton"]
    assert all(r["check"]["rows"] == settings["check_scores"] // r["T"] < r["T"] for r in longest)  # reduced check
    assert any(r["visited_tiles"] < r["causal_tiles"] for r in longest)  # the dry run does skip tiles


@needs_cpu
def test_dry_run_decoders_equal_greedy_and_streaming_covers_every_cache(dry_run):
    parts = dry_run[0]["parts"]
    decoding = parts["decoding"]
    assert decoding["all_equal_greedy"] is True
    base = decoding["models"]["base"]["rows"]
    assert {(r["kind"], r["method"]) for r in base} == {
        (kind, label) for kind in ("code", "prose") for label, _, _ in decoding_methods()
    }
    assert all(r["steps"] <= r["tokens"] == parts["decoding"]["settings"]["new_tokens"] for r in base)
    assert list(decoding["models"]) == ["base"]  # offline: smollm2-135m may need a download
    streaming = parts["streaming"]["models"]["base"]
    assert [r["cache"] for r in streaming["latency"]] == parts["streaming"]["settings"]["caches"]
    assert len(streaming["memory"]["segments"]) >= 2


def decoding_methods():
    from gpu_parts.decoding import METHODS

    return METHODS


def test_correctness_check_fails_a_wrong_mask_and_a_wrong_gradient():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 48, 16, generator=g, dtype=torch.float64) for _ in range(3))
    mask_mod, rows = masks.sink_window(2, 8), torch.arange(48)

    def check(attend):
        return kernel_part.check_against_reference(attend, q, k, v, mask_mod, rows, 1e-3, backward=True)

    right = lambda q, k, v: minillm_kernels.reference_attention(q, k, v, n_sink=2, window=8)
    off_by_one = lambda q, k, v: minillm_kernels.reference_attention(q, k, v, n_sink=2, window=7)
    no_dq = lambda q, k, v: minillm_kernels.reference_attention(q.detach(), k, v, n_sink=2, window=8) + 0 * q
    assert check(right)["passed"] is True
    assert check(off_by_one)["passed"] is False
    wrong_grad = check(no_dq)
    assert wrong_grad["passed"] is False and wrong_grad["max_rel_err"]["out"] < 1e-5


def test_reduced_check_passes_the_reference_on_a_subset_of_rows():
    # With dO zero outside the rows, a key block seen only by unchecked rows has dK = dV = 0 in both.
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, 1, 64, 16, generator=g, dtype=torch.float64) for _ in range(3))
    rows = torch.tensor([0, 1, 63])
    mask_mod = masks.sink_window(1, 4)
    right = lambda q, k, v: minillm_kernels.reference_attention(q, k, v, n_sink=1, window=4)
    result = kernel_part.check_against_reference(right, q, k, v, mask_mod, rows, 1e-5, backward=True)
    assert result["passed"] is True and result["rows"] == 3


def test_lambda_mask_is_the_kernels_sink_window_with_one_less():
    for name, (mask_mod, n_sink, window) in kernel_part.mask_specs(4, 32).items():
        expected = masks.materialize(minillm_kernels.mask_mod_for(n_sink, window), 100, 100)
        assert torch.equal(masks.materialize(mask_mod, 100, 100), expected), name


def test_spent_budget_skips_every_row_with_the_reason():
    settings = {**gpu.DRY["kernel"], "dtypes": ["float32"], "device": "cpu", "timed": False, "peak_tflops": None}
    result = kernel_part.run(settings, Budget(0), lambda partial: None)
    assert result["rows"] and all("skipped" in r and "check" not in r for r in result["rows"])
    assert all("time budget" in r["skipped"] for r in result["rows"] if r["impl"] != "sdpa_dense")
    assert result["all_checks_passed"] is False  # no check ran: nothing may claim to have passed


def test_peak_table_knows_h100_h200_a100_and_nothing_else():
    assert peak_tflops("NVIDIA H200") == 989.0
    assert peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert peak_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert peak_tflops("Tesla T4") is None


@needs_cpu
def test_without_cuda_the_real_run_refuses_and_says_how_to_test():
    with pytest.raises(SystemExit, match="no CUDA device: use --dry-run"):
        gpu.main([])


@pytest.mark.parametrize(
    ("argv", "flag", "rule"),
    [
        (["--dry-run", "--window", "0"], "--window", ">= 2"),
        (["--dry-run", "--lengths", "8"], "--lengths", ">= 16"),
        (["--dry-run", "--parts", "kernel,gpu"], "--parts", "subset of kernel,decoding,streaming"),
        (["--dry-run", "--kernel-budget", "0"], "--kernel-budget", ">= 1"),
        (["--dry-run", "--out", str(gpu.RESULTS)], "--out", "must not write into benchmarks/results"),
    ],
)
def test_bad_flags_name_the_flag_and_the_rule(argv, flag, rule, capsys):
    with pytest.raises(SystemExit):
        gpu.parse_args(argv)
    err = capsys.readouterr().err
    assert flag in err and rule in err


def test_load_results_is_none_when_never_measured_and_summary_says_so(tmp_path):
    assert gpu.load_results(tmp_path / "gpu.json") is None
    assert "not measured yet" in gpu.summary(None)


@needs_cpu
def test_a_failing_part_is_recorded_and_the_next_part_still_runs(tmp_path, monkeypatch):
    from gpu_parts import decoding

    def broken(settings, budget, save):
        raise RuntimeError("deliberately broken")

    monkeypatch.setattr(decoding, "run", broken)
    results = gpu.load_results(gpu.main(["--dry-run", "--parts", "decoding,streaming", "--out", str(tmp_path)]))
    assert results["parts"]["decoding"]["status"] == "failed: RuntimeError: deliberately broken"
    assert results["parts"]["streaming"]["status"] == "done"
    assert results["parts"]["streaming"]["models"]["base"]["latency"]


def test_summary_names_the_gpu_the_date_and_the_headline_figures():
    fwd = {"ms": 1.5, "tflops": 300.0, "fraction_of_peak": 0.3}
    results = {
        "dry_run": False,
        "date": "2026-12-02T10:00:00+00:00",
        "machine": {"gpu": "NVIDIA H200"},
        "parts": {
            "kernel": {
                "rows": [{"impl": "triton", "mask": "sink_window", "dtype": "float16", "T": 65536, "forward": fwd}]
            },  # fmt: skip
            "streaming": {
                "models": {"base": {"latency": [{"cache": 4096, "sink_ms": 2.0, "recompute_ms": 9.0, "speedup": 4.5}]}}
            },  # fmt: skip
        },
    }
    text = gpu.summary(results)
    assert text.startswith("GPU figures (NVIDIA H200, 2026-12-02)") and "DRY RUN" not in text
    assert "T=65536: forward 1.5 ms (300.0 TFLOP/s" in text and "cache 4096: sink 2.0 ms/token" in text


def test_summary_of_some_parts_shows_only_those_and_says_when_they_were_not_measured():
    fwd = {"ms": 1.5, "tflops": 300.0}
    kernel = {"status": "done", "rows": [{"impl": "triton", "mask": "sink_window", "dtype": "float16", "T": 4096,
                                          "forward": fwd}]}  # fmt: skip
    decoding = {"status": "done", "models": {"base": {"rows": [
        {"kind": "code", "method": "lookahead W7 N5 G7", "compression": 2.5, "speedup_vs_greedy": 1.8}]}}}  # fmt: skip
    results = {"dry_run": False, "date": "2026-12-02T10:00:00+00:00", "machine": {"gpu": "NVIDIA H200"},
               "parts": {"kernel": kernel, "decoding": decoding}}  # fmt: skip
    text = gpu.summary(results, parts=("decoding",))
    assert "lookahead W7 N5 G7: 2.5 tokens/step, 1.8x" in text and "kernel" not in text
    assert "kernel triton" in gpu.summary(results, parts=("kernel",)) and "decoding" not in gpu.summary(
        results, parts=("kernel",)
    )
    assert "not measured yet" in gpu.summary(results, parts=("streaming",))
    failed = {**results, "parts": {"decoding": {"status": "failed: RuntimeError: x"}}}
    assert gpu.summary(failed, parts=("decoding",)).endswith("no figures: decoding failed: RuntimeError: x")
    with pytest.raises(ValueError, match="parts must be a tuple of names from"):
        gpu.summary(results, parts=("decode",))


def test_a_model_that_cannot_load_is_a_recorded_skip_not_an_error():
    from gpu_parts.models import load_model

    why = load_model("no-such-model", torch.device("cpu"))
    assert isinstance(why, str) and why.startswith("skipped: load_pretrained('no-such-model') failed: ")
