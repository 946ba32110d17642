"""MEGABYTE against a flat byte transformer at equal training compute, in the paper's regime: long
sequences, where attention dominates the flat model's FLOPs.

    python benchmarks/megabyte_fair.py --model flat --threads 1 &       # resumable: runs/fair/flat_lr*/
    python benchmarks/megabyte_fair.py --model megabyte --threads 1 &   # ... in parallel, one core each
    python benchmarks/megabyte_fair.py --report                         # results json + png from the logs

The claim tested (Yu et al., 2023, arXiv 2305.07185, Table 2 and section 6): at a fixed training
compute, on long sequences, MEGABYTE reaches lower bits per byte than a flat transformer. The set-up:
- T = 2048 bytes, P = 8 (the presets `flat_2k` and `megabyte_2k` of minillm.train_megabyte). At this
  length attention is 56 % of the flat model's forward FLOPs (24 % at T = 512, where chapter 06's
  first comparison ran), so there is compute for the patches to save.
- Compute matched by the project's FLOP counter (train_megabyte.flops_per_byte: 3.74 vs 3.76
  MFLOPs per byte), so equal steps of equal batches (4 x 2048 bytes, the same for both) are equal
  compute. MEGABYTE spends it on 11.6M parameters, the flat model on 0.8M.
- A constant learning rate after a 30-step warm-up: one run then passes through every budget on
  equal terms (a cosine schedule would have to be re-run per budget, which a CPU cannot afford).
- A learning-rate sweep per model at the smallest budget (4 points each: see LEARNING_RATES); the
  best rate (lowest mean validation bits per byte over prose and code) goes on to the larger budgets.
Every evaluation scores the same 32 x 2048 validation bytes per kind for both models.
Writes benchmarks/results/megabyte_fair.json and megabyte_fair.png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from dataclasses import replace
from pathlib import Path

import torch

from minillm import data
from minillm.train import load_state
from minillm.train_megabyte import PRESETS, ByteRun, compare, flops_per_byte, test_report, train
from minillm.validate import positive_float, positive_int

RESULTS = Path(__file__).parent / "results"
MODELS = {"flat": "flat_2k", "megabyte": "megabyte_2k"}
# A 3-point grid around the course's 2e-3 (1e-3, 2e-3, 4e-3); the flat model's best point was the
# grid's highest and MEGABYTE's its lowest, so each grid goes one step further that way (a best rate
# at the edge of a grid is not known to be the best).
LEARNING_RATES = {"flat": (1e-3, 2e-3, 4e-3, 8e-3), "megabyte": (5e-4, 1e-3, 2e-3, 4e-3)}


def run_for(model: str, lr: float, steps: int) -> ByteRun:
    """The model's preset at a constant learning rate lr (after warm-up), scheduled for `steps`."""
    run = PRESETS[MODELS[model]]
    return replace(run, train=replace(run.train, lr=lr, min_lr=lr, steps=steps))


def run_dir(runs: Path, model: str, lr: float) -> Path:
    return runs / f"{model}_lr{lr:g}"


def read_log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def mean_bpb(entry: dict) -> float:
    return (entry["val_bpb_prose"] + entry["val_bpb_code"]) / 2


def bpb_at(log: list[dict], step: int) -> float | None:
    return next((round(mean_bpb(e), 4) for e in log if e["step"] == step), None)


def best_lr(runs: Path, model: str, lrs: tuple[float, ...], step: int) -> float | None:
    """The rate with the lowest mean validation bpb at `step`; None until every sweep run got there."""
    scores = {lr: bpb_at(read_log(run_dir(runs, model, lr) / "log.jsonl"), step) for lr in lrs}
    if any(v is None for v in scores.values()):
        return None
    return min(scores, key=scores.get)


def steps_done(out: Path) -> int:
    return load_state(out / "state.pt")["step"] if (out / "state.pt").exists() else 0


def train_model(model: str, runs: Path, lrs: tuple[float, ...], budget_steps: list[int], sweep_only: bool) -> None:
    """The sweep to the smallest budget, then the best rate on to the largest (both resumable).
    A sweep run already past the smallest budget is left alone (another process may be extending it)."""
    first, last = budget_steps[0], budget_steps[-1]
    for lr in lrs:
        if steps_done(run_dir(runs, model, lr)) < first:
            print(f"{model} lr {lr:g}: to step {first}", flush=True)
            train(run_for(model, lr, last), run_dir(runs, model, lr), progress=False, stop_at=first)
    if sweep_only:
        return
    lr = best_lr(runs, model, lrs, first)
    print(f"{model}: best lr {lr:g} at step {first}; on to step {last}", flush=True)
    model_out = train(run_for(model, lr, last), run_dir(runs, model, lr), progress=False)
    (run_dir(runs, model, lr) / "test.json").write_text(json.dumps(test_report(model_out, run_for(model, lr, last))))


def attention_share_by_length(lengths=(512, 1024, 2048, 4096, 8192)) -> dict[str, float]:
    """The share of the flat model's forward FLOPs spent in attention, by context length."""
    cfg = PRESETS["flat_2k"].train.model
    return {str(n): round((f := flops_per_byte(cfg, n)).attention / f.total, 3) for n in lengths}


def report(runs: Path, budget_steps: list[int]) -> dict:
    matched = compare({m: PRESETS[p] for m, p in MODELS.items()})
    out = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
        "setup": {
            "seq_len": PRESETS["flat_2k"].seq_len,
            "patch_size": PRESETS["megabyte_2k"].megabyte.patch_size,
            "batch": [PRESETS["flat_2k"].train.batch_size, PRESETS["flat_2k"].seq_len],
            "schedule": "AdamW, linear warm-up for 30 steps, then the learning rate held constant",
            "learning_rates": LEARNING_RATES,
            "sweep_at_step": budget_steps[0],
            "budget_steps": budget_steps,
            "train_bytes_in_corpus": {k: len(data.load_bytes(k, "train")) for k in data.KINDS},
        },
        "matched": matched,
        "flat_attention_share_by_length": attention_share_by_length(),
        "models": {},
    }
    for model, lrs in LEARNING_RATES.items():
        sweep = {}
        for lr in lrs:
            log = read_log(run_dir(runs, model, lr) / "log.jsonl")
            sweep[f"{lr:g}"] = [
                {k: e[k] for k in ("step", "train_tflops", "val_bpb_prose", "val_bpb_code")} for e in log
            ]
        lr = best_lr(runs, model, lrs, budget_steps[0])
        entry = {"sweep": sweep, "best_lr": lr}
        if lr is not None:
            log = read_log(run_dir(runs, model, lr) / "log.jsonl")
            at = {e["step"]: e for e in log}
            entry["budgets"] = [
                {"step": s, "train_tflops": at[s]["train_tflops"], "val_bpb": round(mean_bpb(at[s]), 4)}
                for s in budget_steps
                if s in at
            ]
            test = run_dir(runs, model, lr) / "test.json"
            if test.exists():
                entry["test_bpb_at_last_budget"] = json.loads(test.read_text())
            entry["steps_done"] = steps_done(run_dir(runs, model, lr))
        out["models"][model] = entry
    return out


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for model, color in (("flat", "tab:blue"), ("megabyte", "tab:orange")):
        entry = result["models"][model]
        for lr, curve in entry["sweep"].items():
            best = entry["best_lr"] is not None and float(lr) == entry["best_lr"]
            ax.plot(
                [e["train_tflops"] for e in curve],
                [(e["val_bpb_prose"] + e["val_bpb_code"]) / 2 for e in curve],
                color=color,
                lw=2.2 if best else 0.9,
                alpha=1 if best else 0.5,
                marker="o" if best else None,
                ms=3,
                label=f"{model} lr {lr}" + (" (best)" if best else ""),
            )
    ax.set_xlabel("training compute (TFLOPs, by train_megabyte.flops_per_byte)")
    ax.set_ylabel("validation bits per byte (mean of prose, code)")
    ax.set_title("MEGABYTE vs flat at equal compute, T = 2048, P = 8")
    ax.legend(fontsize=8, loc="upper right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=sorted(MODELS), help="train this model's sweep and best run")
    parser.add_argument("--report", action="store_true", help="write the results json and png from the logs")
    parser.add_argument("--runs", default="runs/fair", help="where the runs live (resumable)")
    parser.add_argument("--lrs", type=positive_float, nargs="+", help="the model's sweep (default LEARNING_RATES)")
    parser.add_argument("--budget-steps", type=positive_int, nargs="+", default=[240, 480, 720])
    parser.add_argument("--sweep-only", action="store_true", help="train the sweep runs only, not the best on")
    parser.add_argument("--threads", type=positive_int, default=1)
    args = parser.parse_args()
    if args.budget_steps != sorted(set(args.budget_steps)):
        parser.error("--budget-steps must be increasing")
    if args.model is None and not args.report:
        parser.error("give --model NAME or --report")
    torch.set_num_threads(args.threads)
    runs = Path(args.runs)
    if args.model:
        lrs = tuple(args.lrs or LEARNING_RATES[args.model])
        if len(lrs) < 3:
            parser.error("--lrs: give at least 3 learning rates")
        train_model(args.model, runs, lrs, args.budget_steps, args.sweep_only)
    if args.report:
        result = report(runs, args.budget_steps)
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "megabyte_fair.json").write_text(json.dumps(result, indent=1) + "\n")
        plot(result, RESULTS / "megabyte_fair.png")
        for model, entry in result["models"].items():
            print(model, "best lr", entry["best_lr"], entry.get("budgets"))


if __name__ == "__main__":
    main()
