"""∞-former on the sorting task: accuracy against stream length for STM only, LTM and sticky LTM.

    python benchmarks/infinite_former.py             # about 20 min on one (shared) CPU thread
    python benchmarks/infinite_former.py --quick     # about a minute: checks the script end to end

Martins, Marinho & Martins (ACL 2022, arXiv 2109.00301), §4.1, scaled to a CPU (see
minillm/sorting.py). Each variant is trained at the shortest length, then training continues at
each longer length (a curriculum: the weights carry over, since the STM, RoPE and the LTM's [0, 1]
positions do not depend on the length); the paper instead trains a fresh model per length for
20k steps. After the last length, the model is also scored, untrained, on `--extra-lengths`.
For each length the json also holds `stm_ceiling`: the accuracy of exact counting over the
`mem_len` tokens an STM-only model can see, and `chance`: guessing among the symbols not yet named.

Writes benchmarks/results/infinite_former.json (after every run, so a killed run keeps its
results) and benchmarks/results/infinite_former.png.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from minillm.sorting import VARIANTS, SortingConfig, accuracy, count_oracle_accuracy, make_sorting_data, train_sorting
from minillm.validate import positive_int

RESULTS = Path(__file__).resolve().parent / "results"


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    labels = {"stm": "STM only (Transformer-XL)", "ltm": "∞-former (LTM)", "sticky": "∞-former, sticky memories"}
    for variant in results["variants"]:
        runs = sorted((r for r in results["runs"] if r["variant"] == variant), key=lambda r: r["length"])
        ax.plot([r["length"] for r in runs], [r["accuracy"] for r in runs], "o-", label=labels[variant])
        for r in runs:
            if not r["trained_at_this_length"]:
                ax.plot(r["length"], r["accuracy"], "o", mfc="white", color=ax.lines[-1].get_color())
    lengths = sorted(results["reference"], key=int)
    ceiling = [results["reference"][n]["stm_ceiling"] for n in lengths]
    ax.plot([int(n) for n in lengths], ceiling, "k--", lw=1, label=f"exact counts of the last {results['mem_len']}")
    ax.axhline(
        results["reference"][lengths[0]]["chance"],
        color="gray",
        ls=":",
        lw=1,
        label="chance (among symbols not yet named)",
    )
    ax.set_xscale("log", base=2)
    ax.set_xlabel("stream length (tokens); open marker: not trained at that length")
    ax.set_ylabel("teacher-forced accuracy")
    ax.set_title("Sorting by frequency: memory vs length")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", type=positive_int, nargs="+", default=[512, 1024, 2048])
    parser.add_argument("--extra-lengths", type=positive_int, nargs="*", default=[4096], help="evaluated, not trained")
    parser.add_argument("--first-steps", type=positive_int, default=1200, help="steps at the shortest length")
    parser.add_argument("--next-steps", type=positive_int, default=400, help="steps at each longer length")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--threads", type=positive_int, default=1)
    parser.add_argument("--quick", action="store_true", help="tiny run to check the script")
    parser.add_argument(
        "--out", default=None, help="json path (default results/infinite_former.json; --quick: a temp dir)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    base = SortingConfig()
    if args.quick:
        args.lengths, args.extra_lengths, args.first_steps, args.next_steps = [256, 512], [1024], 20, 10
        base = replace(base, eval_examples=32)
    default = (
        Path(tempfile.gettempdir()) / "infinite_former_quick.json" if args.quick else RESULTS / "infinite_former.json"
    )
    out = Path(args.out) if args.out else default
    out.parent.mkdir(parents=True, exist_ok=True)
    results = {
        "task": "sorting by frequency (Martins et al. 2022, §4.1), scaled down; see minillm/sorting.py",
        "metric": "teacher-forced accuracy on the sorted symbols, test set of eval_examples streams",
        "protocol": f"curriculum: {args.first_steps} steps at {args.lengths[0]}, then {args.next_steps} steps "
        "at each longer length, weights carried over; extra lengths evaluated without training",
        "config": {k: v for k, v in asdict(base).items() if k not in ("length", "steps")},
        "mem_len": base.mem_len,
        "variants": args.variants,
        "reference": {},
        "runs": [],
        "environment": {
            "torch": torch.__version__,
            "python": platform.python_version(),
            "threads": args.threads,
            "device": "cuda" if torch.cuda.is_available() else "cpu",
            "machine": platform.machine(),
        },
    }
    for length in [*args.lengths, *args.extra_lengths]:
        streams, targets = make_sorting_data(base.eval_examples, length, base.vocab, seed=base.seed + 1000)
        results["reference"][str(length)] = {
            "stm_ceiling": round(count_oracle_accuracy(streams, targets, window=base.mem_len), 4),
            "chance": round(sum(1 / (base.vocab - k) for k in range(base.vocab)) / base.vocab, 4),
        }
    start = time.time()
    for variant in args.variants:
        model = None
        for i, length in enumerate(args.lengths):
            cfg = replace(base, length=length, steps=args.first_steps if i == 0 else args.next_steps)
            model, record = train_sorting(cfg, variant, model=model, eval_every=max(1, cfg.steps // 4))
            record["trained_at_this_length"], record["steps"] = True, cfg.steps
            results["runs"].append({k: v for k, v in record.items() if k != "config"})
            print(json.dumps({k: record[k] for k in ("variant", "length", "accuracy", "train_seconds")}), flush=True)
            out.write_text(json.dumps(results, indent=1))
        for length in args.extra_lengths:
            t0 = time.time()
            streams, targets = make_sorting_data(base.eval_examples, length, base.vocab, seed=base.seed + 1000)
            acc = round(accuracy(model, streams, targets, base.segment_len), 4)
            record = {
                "variant": variant,
                "length": length,
                "accuracy": acc,
                "trained_at_this_length": False,
                "eval_seconds": round(time.time() - t0, 1),
            }
            results["runs"].append(record)
            print(json.dumps(record), flush=True)
    results["total_minutes"] = round((time.time() - start) / 60, 2)
    out.write_text(json.dumps(results, indent=1))
    plot(results, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')} in {results['total_minutes']} min")
    return results


if __name__ == "__main__":
    main()
