"""Every GPU figure of the course in one prepared run: kernel, decoding, streaming.

    python benchmarks/gpu.py                               # on an H100/H200: all parts, < 8 minutes
    python benchmarks/gpu.py --parts kernel                # one part (kernel, decoding, streaming)
    python benchmarks/gpu.py --dry-run                     # any machine: tiny sizes, < 60 s on 2 cores

A GPU is lent for minutes, so this script is ready before the GPU is: each part runs under its own
time budget, prints its progress, and the json (benchmarks/results/gpu.json: device, driver,
versions, date, every figure with its settings) is rewritten after every measurement, so a run
that is cut off still leaves its figures. A png per part is written beside it. `--dry-run` runs
the same code at tiny sizes (Triton's interpreter on a CPU), writes into a temporary directory (or
--out) and marks the json dry_run: true; it claims no timings. Notebooks read the results with
`load_results()` and `summary()`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results"
PARTS = ("kernel", "decoding", "streaming")
BUDGET_S = {"kernel": 240, "decoding": 90, "streaming": 90}  # 7 minutes, start-up and loading aside

# Settings of the real run and of the dry run; flags override the lengths and the mask.
FULL = {
    "kernel": {"lengths": [4096, 16384, 65536], "window": 1024, "n_sink": 4, "batch": 1, "heads": 16,
               "head_dim": 64, "dense_max_t": 16384, "check_scores": 4096 * 4096},
    "decoding": {"models": ["base", "smollm2-135m"], "prompts": 4, "prompt_chars": 64, "new_tokens": 64,
                 "repeats": 3},
    "streaming": {"models": ["smollm2-135m", "base"], "caches": [256, 512, 1024, 2048, 4096], "n_sink": 4,
                  "latency_tokens": 32, "warmup": 8, "stream_tokens": 16384, "stream_cache": 1024,
                  "segment": 1024, "chunk": 256},
}  # fmt: skip
# The dry run uses the committed "base" only: smollm2-135m may need a download, and the dry run
# (a test) must run offline; the real run records smollm2-135m as skipped when it cannot load.
DRY = {
    "kernel": {"lengths": [64, 160], "window": 32, "n_sink": 4, "batch": 1, "heads": 2, "head_dim": 16,
               "dense_max_t": 64, "check_scores": 96 * 160},
    "decoding": {"models": ["base"], "prompts": 1, "prompt_chars": 24, "new_tokens": 8,
                 "repeats": 1},
    "streaming": {"models": ["base"], "caches": [16, 32], "n_sink": 4, "latency_tokens": 2,
                  "warmup": 1, "stream_tokens": 96, "stream_cache": 24, "segment": 32, "chunk": 16},
}  # fmt: skip


def load_results(path: str | Path | None = None) -> dict | None:
    """The GPU results (default benchmarks/results/gpu.json), or None when they were never measured."""
    path = Path(path) if path is not None else RESULTS / "gpu.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())


def summary(results: dict | None, parts: tuple[str, ...] = PARTS) -> str:
    """A few lines for a notebook: the headline figures of `parts` with the GPU and the date, or
    "not measured yet" (also when the run measured none of `parts`)."""
    unknown = [p for p in parts if p not in PARTS]
    if isinstance(parts, str) or unknown:
        raise ValueError(f"parts must be a tuple of names from {PARTS}, got {parts!r}")
    not_yet = f"GPU figures ({', '.join(parts)}): not measured yet (run `python benchmarks/gpu.py` on a GPU)."
    if results is None or not any(p in results["parts"] for p in parts):
        return not_yet
    machine = results["machine"]
    lines = [f"GPU figures ({machine['gpu']}, {results['date'][:10]}{', DRY RUN' if results['dry_run'] else ''}):"]
    parts = {p: results["parts"][p] for p in parts if p in results["parts"]}
    for r in parts.get("kernel", {}).get("rows", []):
        fwd = r.get("forward", {})
        if fwd.get("ms") is not None and r["T"] == max(x["T"] for x in parts["kernel"]["rows"]):
            lines.append(f"  kernel {r['impl']:10s} {r['mask']} {r['dtype']} T={r['T']}: forward {fwd['ms']} ms"
                         f" ({fwd['tflops']} TFLOP/s over visited tiles)")  # fmt: skip
    for name, m in parts.get("decoding", {}).get("models", {}).items():
        for r in m.get("rows", []):
            if r["method"].startswith("lookahead") and r.get("speedup_vs_greedy") is not None:
                lines.append(f"  decoding {name} {r['kind']} {r['method']}: {r['compression']} tokens/step,"
                             f" {r['speedup_vs_greedy']}x greedy's wall clock")  # fmt: skip
    for name, m in parts.get("streaming", {}).get("models", {}).items():
        for r in m.get("latency", []):
            if r.get("speedup") is not None:
                lines.append(f"  streaming {name} cache {r['cache']}: sink {r['sink_ms']} ms/token,"
                             f" re-computation {r['recompute_ms']} ms ({r['speedup']}x)")  # fmt: skip
    if len(lines) == 1:  # the parts ran but left no figure: failed, skipped, or a dry run's untimed paths
        lines.append("  no figures: " + "; ".join(f"{p} {entry.get('status')}" for p, entry in parts.items()))
    return "\n".join(lines)


def machine_info(device: torch.device) -> dict:
    """Names and versions the figures depend on."""
    import triton
    from gpu_parts.common import peak_tflops

    info = {"torch": torch.__version__, "triton": triton.__version__, "python": platform.python_version(),
            "platform": platform.platform(), "cuda": torch.version.cuda}  # fmt: skip
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        driver = None
        try:  # the driver's version, as nvidia-smi reports it
            import subprocess

            out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=20)  # fmt: skip
            driver = out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None
        except (OSError, subprocess.TimeoutExpired):
            pass
        return {**info, "gpu": name, "driver": driver, "peak_tflops_16bit": peak_tflops(name)}
    return {**info, "gpu": f"none (CPU, {torch.get_num_threads()} threads)", "driver": None, "peak_tflops_16bit": None}


def int_at_least(minimum: int):
    """An argparse type: an int >= minimum; argparse names the flag in its error."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an int, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


def parse_parts(text: str) -> list[str]:
    parts = [p.strip() for p in text.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if not parts or unknown:
        raise argparse.ArgumentTypeError(f"must be a comma-separated subset of {','.join(PARTS)}, got {text!r}")
    return parts


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", type=parse_parts, default=list(PARTS), help="default: kernel,decoding,streaming")
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on any machine; no timing claims")
    parser.add_argument("--out", type=Path, help="results directory (default: benchmarks/results; dry run: a temp dir)")
    parser.add_argument("--lengths", type=int_at_least(16), nargs="+", help="kernel: sequence lengths T")
    parser.add_argument("--window", type=int_at_least(2), help="kernel: window (the Λ's n_local)")
    parser.add_argument("--n-sink", type=int_at_least(0), help="kernel: sinks (the Λ's n_global)")
    for part in PARTS:
        parser.add_argument(f"--{part}-budget", type=int_at_least(1), default=BUDGET_S[part],
                            help=f"seconds for the {part} part (default {BUDGET_S[part]})")  # fmt: skip
    args = parser.parse_args(argv)
    if args.dry_run and args.out is not None and args.out.resolve() == RESULTS.resolve():
        parser.error("--out: a dry run must not write into benchmarks/results (its figures are no measurements)")
    return args


def write_json(path: Path, results: dict) -> None:
    """Write atomically: a run killed mid-write still leaves the previous complete json."""
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=1) + "\n")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> Path:
    """Run the selected parts and return the json's path."""
    args = parse_args(argv)
    cuda = torch.cuda.is_available()
    if not cuda and not args.dry_run:
        sys.exit("no CUDA device: use --dry-run to test the script on a CPU")
    if not cuda:
        torch.set_num_threads(1)  # tiny tensors: one thread is as fast, and the cores are shared
    # Imported after the CUDA check: `minillm_kernels` sets TRITON_INTERPRET=1 when there is no GPU.
    from gpu_parts import decoding, kernel, streaming
    from gpu_parts.common import Budget

    import minillm_kernels

    out = args.out or (Path(tempfile.mkdtemp(prefix="gpu_dry_run_")) if args.dry_run else RESULTS)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device("cuda" if cuda else "cpu")
    machine = machine_info(device)
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    results = {"dry_run": args.dry_run, "date": now,
               "command": " ".join(["python benchmarks/gpu.py", *(argv if argv is not None else sys.argv[1:])]),
               "machine": machine, "triton_interpreted": minillm_kernels.TRITON_INTERPRETED, "parts": {}}  # fmt: skip
    json_path = out / "gpu.json"
    modules = {"kernel": kernel, "decoding": decoding, "streaming": streaming}
    t_run = time.perf_counter()
    for part in args.parts:
        settings = dict((DRY if args.dry_run else FULL)[part])
        if part == "kernel":
            overrides = {"lengths": args.lengths, "window": args.window, "n_sink": args.n_sink}
            settings.update({k: v for k, v in overrides.items() if v is not None})
            settings["dtypes"] = ["float16", "bfloat16"] if cuda else ["float32"]  # the interpreter: float32 only
            settings["peak_tflops"] = machine["peak_tflops_16bit"]
        settings.update(device=device.type, timed=cuda and not args.dry_run)
        budget = Budget(getattr(args, f"{part}_budget"))
        entry = {"status": "running", "budget_s": budget.seconds, "settings": settings}
        results["parts"][part] = entry

        def save(partial: dict, entry: dict = entry, budget: Budget = budget) -> None:
            entry.update(partial, seconds=round(budget.elapsed(), 1))
            write_json(json_path, results)

        print(f"[{time.perf_counter() - t_run:6.1f} s] {part}: budget {budget.seconds} s", flush=True)
        save({})
        try:
            save({**modules[part].run(settings, budget, save), "status": "done"})
            title = f"{part}, {machine['gpu']}, {results['date'][:10]}" + (" (dry run: sizes tiny, no timings)"
                                                                           if args.dry_run else "")  # fmt: skip
            modules[part].plot(entry, out / f"gpu_{part}.png", title)
        except Exception as e:  # the GPU is lent for minutes: a broken part must not cost the others
            save({"status": f"failed: {type(e).__name__}: {e}"})
            print(f"{part} failed: {e!r}", file=sys.stderr, flush=True)
        print(f"[{time.perf_counter() - t_run:6.1f} s] {part}: done in {entry['seconds']} s", flush=True)
    print(summary(results))
    print(f"wrote {json_path} and gpu_*.png in {time.perf_counter() - t_run:.0f} s")
    return json_path


if __name__ == "__main__":
    main()
