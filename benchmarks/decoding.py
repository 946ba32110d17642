"""Steps, step compression and tokens/s of greedy, Jacobi and lookahead decoding on code and prose.

    python benchmarks/decoding.py                          # the committed "base" checkpoint
    python benchmarks/decoding.py --model-dir runs/tiny    # a training run's state.pt (a stand-in)

Compression is the paper's step compression ratio S = greedy steps / steps (Fu et al., 2024,
arXiv 2402.02057), the upper bound of the speed-up; tokens/s is the honest CPU figure, where a
bigger step costs more and lookahead is expected to be slower than greedy. Every decoder's output
is checked against greedy's. Writes decoding.json and decoding.png into --out.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

from minillm import data
from minillm.config import ModelConfig
from minillm.decoding import greedy, jacobi_decode, lookahead_decode
from minillm.model import MiniLLM
from minillm.pretrained import checkpoint_info, load_pretrained
from minillm.tokenizer import ByteTokenizer

# (label, decoder, keyword arguments); lookahead settings are (W, N, G), the reference's knobs
METHODS = [
    ("greedy", greedy, {}),
    ("jacobi m=8", jacobi_decode, {"window": 8}),
    ("LA W5 N3 G5", lookahead_decode, {"window": 5, "ngram": 3, "guesses": 5}),
    ("LA W7 N4 G7", lookahead_decode, {"window": 7, "ngram": 4, "guesses": 7}),
    ("LA W7 N5 G7", lookahead_decode, {"window": 7, "ngram": 5, "guesses": 7}),
    ("LA W15 N5 G15", lookahead_decode, {"window": 15, "ngram": 5, "guesses": 15}),
    ("LA W7 N5 G7 +prompt", lookahead_decode, {"window": 7, "ngram": 5, "guesses": 7, "pool_from_prompt": True}),
]


def load_model(checkpoint: str, model_dir: str | None) -> tuple[MiniLLM, dict]:
    """A committed checkpoint (load_pretrained), or a training run directory holding state.pt."""
    if model_dir is not None and (Path(model_dir) / "state.pt").exists():
        state = torch.load(Path(model_dir) / "state.pt", weights_only=False)
        model = MiniLLM(ModelConfig(**state["config"]["model"]))
        model.load_state_dict(state["model"])
        return model.eval(), {"source": f"{model_dir}/state.pt", "steps": state["step"], "stand_in": True}
    try:
        model = load_pretrained(checkpoint, model_dir)
    except FileNotFoundError as e:
        sys.exit(f"{e}\n(train one, or point --model-dir at a run directory with a state.pt)")
    info = checkpoint_info(checkpoint, model_dir)
    return model, {"source": f"checkpoint {checkpoint}", "steps": info.get("steps"), "stand_in": False}


def prompts(kind: str, n: int, length: int) -> list[list[int]]:
    """n prompts of BOS + `length` bytes from the test split, each starting at a line start."""
    text = data.load_text(kind, "test")
    out = []
    for i in range(n):
        start = text.find("\n", (i + 1) * len(text) // (n + 1)) + 1
        piece = text[start:].encode("utf-8")[:length]
        out.append([ByteTokenizer.bos_id, *piece])
    return out


def run(model: MiniLLM, prompt_sets: dict[str, list[list[int]]], new_tokens: int) -> list[dict]:
    rows = []
    for kind, ps in prompt_sets.items():
        reference = [greedy(model, p, new_tokens).tokens for p in ps]
        greedy_steps = len(ps) * new_tokens
        for label, decode, kwargs in METHODS:
            steps, tokens, exact, seconds, most = 0, 0, True, 0.0, 0
            for p, ref in zip(ps, reference, strict=True):
                start = time.perf_counter()
                result = decode(model, p, new_tokens, **kwargs)
                seconds += time.perf_counter() - start
                steps, tokens = steps + result.steps, tokens + len(result.tokens)
                exact &= result.tokens == ref
                most = max(most, max(result.accepted))
            row = {
                "kind": kind,
                "method": label,
                **kwargs,
                "steps": steps,
                "tokens": tokens,
                "compression": round(greedy_steps / steps, 3),
                "tokens_per_s": round(tokens / seconds, 1),
                "max_accepted": most,
                "equals_greedy": exact,
            }
            rows.append(row)
            print(
                f"{kind:5s} {label:22s} steps {steps:5d}  compression {row['compression']:5.2f}  "
                f"{row['tokens_per_s']:7.1f} tok/s  max/step {most}  exact {exact}"
            )
    return rows


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(dict.fromkeys(r["method"] for r in rows))
    kinds = list(dict.fromkeys(r["kind"] for r in rows))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    width = 0.8 / len(kinds)
    for i, kind in enumerate(kinds):
        sub = {r["method"]: r for r in rows if r["kind"] == kind}
        x = [j + i * width for j in range(len(methods))]
        axes[0].bar(x, [sub[m]["compression"] for m in methods], width, label=kind)
        axes[1].bar(x, [sub[m]["tokens_per_s"] for m in methods], width, label=kind)
    for ax, ylabel in zip(axes, ("step compression (greedy steps / steps)", "tokens / s (CPU)"), strict=True):
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(methods))], methods, rotation=35, ha="right")
        ax.set_ylabel(ylabel)
        ax.legend()
    axes[0].axhline(1.0, color="gray", lw=0.8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="base", help="name of a committed checkpoint (default: base)")
    parser.add_argument("--model-dir", default=None, help="checkpoint directory, or a training run with state.pt")
    parser.add_argument("--prompts", type=int, default=4, help="prompts per kind")
    parser.add_argument("--prompt-len", type=int, default=96, help="bytes per prompt")
    parser.add_argument("--new-tokens", type=int, default=96)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, source = load_model(args.checkpoint, args.model_dir)
    prompt_sets = {kind: prompts(kind, args.prompts, args.prompt_len) for kind in ("code", "prose")}
    rows = run(model, prompt_sets, args.new_tokens)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {
        "model": {**source, "config": model.config.to_dict()},
        "settings": {k: getattr(args, k) for k in ("prompts", "prompt_len", "new_tokens", "threads")},
        "machine": {"platform": platform.platform(), "torch": torch.__version__, "processor": platform.processor()},
        "results": rows,
    }
    (out / "decoding.json").write_text(json.dumps(report, indent=2) + "\n")
    plot(rows, out / "decoding.png", f"Decoding on {source['source']} ({args.new_tokens} new tokens per prompt)")
    print("wrote", out / "decoding.json", "and", out / "decoding.png")


if __name__ == "__main__":
    main()
