"""Variants of the `base` recipe, to find one whose model grows real attention sinks.

    python scripts/sink_search.py NAME '{"lr": 3e-3, "model": {"n_heads": 8}}' --threads 1

Each run trains in runs/sink_search/NAME (resumable) and logs, every eval, the attention mass on
position 0 per layer and head and the window-vs-sink perplexity on a validation stream. The
chosen recipe becomes the `base` preset in minillm/train.py; the logs are summarised in
benchmarks/results/sink_search.json by `--summarise`.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import torch

from minillm.config import ModelConfig
from minillm.train import PRESETS, train
from minillm.validate import nonnegative_float, positive_int

RUNS = Path("runs/sink_search")


def summarise(out: Path) -> None:
    rows = {}
    for log in sorted(RUNS.glob("*/log.jsonl")):
        records = [json.loads(line) for line in log.read_text().splitlines()]
        override = json.loads((log.parent / "override.json").read_text())
        rows[log.parent.name] = {
            "override": override,
            "curve": [
                {
                    "step": r["step"],
                    "val_bpb_prose": r["val_bpb_prose"],
                    "max_sink_mass_after_layer0": max(max(row) for row in r["sink_mass"][1:]),
                    "window_over_sink_ppl": round(r["stream_ppl_window"] / r["stream_ppl_sink4"], 3),
                }
                for r in records
            ],
        }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=1) + "\n")
    print("wrote", out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("name", nargs="?")
    parser.add_argument("override", nargs="?", default="{}")
    parser.add_argument("--preset", default="base")
    parser.add_argument("--threads", type=positive_int, default=1)
    parser.add_argument("--max-minutes", type=nonnegative_float, default=None)
    parser.add_argument("--summarise", action="store_true")
    args = parser.parse_args()
    if args.summarise:
        summarise(Path("benchmarks/results/sink_search.json"))
        return
    torch.set_num_threads(args.threads)
    override = json.loads(args.override)
    cfg = PRESETS[args.preset]
    model_cfg = ModelConfig(**{**cfg.model.to_dict(), **override.pop("model", {})})
    if "prefix" in override:
        override["prefix"] = tuple(override["prefix"])
    cfg = replace(cfg, model=model_cfg, **override)
    out = RUNS / args.name
    out.mkdir(parents=True, exist_ok=True)
    (out / "override.json").write_text(args.override)
    train(cfg, out, max_minutes=args.max_minutes, progress=False)


if __name__ == "__main__":
    main()
