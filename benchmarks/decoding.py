"""Steps, step compression and tokens/s of greedy, Jacobi and lookahead decoding on code and prose.

    python benchmarks/decoding.py                          # the committed "base" checkpoint, CPU (about 1 min)
    python benchmarks/decoding.py --device cuda            # on a GPU: writes decoding_cuda.{json,png}
    python benchmarks/decoding.py --model-dir runs/tiny    # a training run's state.pt (a stand-in)

Compression is the paper's step compression ratio S = greedy steps / steps (Fu et al., 2024,
arXiv 2402.02057), the upper bound of the speed-up; tokens/s is the honest wall-clock figure. On a
CPU a bigger step costs more and lookahead is expected to be slower than greedy. Lookahead runs
over a grid of (W, N, G) (G = W, as the paper's configurations pair them, plus a sweep of G), on
prompts from the test split; every decoder's output is checked against greedy's. Writes
decoding.json and decoding.png (decoding_cuda.* on a GPU) into --out.
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
from minillm.validate import device_arg, positive_int

WINDOWS = (3, 5, 7, 10, 15)  # W, the lookahead window's width (G = W in the grid)
NGRAMS = (3, 4, 5, 6)  # N, the n-gram size (N - 1 window levels, candidates of N - 1 tokens)
GUESSES = (0, 1, 3, 7, 15)  # G swept at W = 7, N = 5 (the reference README's 7B setting)
# The reference's acceptance rule (at most N-1 tokens a step, comparable with the paper's ratios),
# measured beside the default bonus rule at these (W, N, G = W): the W sweep at N = 5, the N sweep at W = 7.
REFERENCE_RULE = sorted({(W, 5, W) for W in WINDOWS} | {(7, N, 7) for N in NGRAMS})


def methods() -> list[tuple[str, object, dict]]:
    """(label, decoder, keyword arguments) for every configuration measured."""
    out = [("greedy", greedy, {})]
    out += [(f"jacobi m={m}", jacobi_decode, {"window": m}) for m in (4, 8, 16)]
    grid = [(W, N, W) for N in NGRAMS for W in WINDOWS] + [(7, 5, G) for G in GUESSES if G != 7]
    out += [(f"LA W{W} N{N} G{G}", lookahead_decode, {"window": W, "ngram": N, "guesses": G}) for W, N, G in grid]
    out += [
        (f"LAref W{W} N{N} G{G}", lookahead_decode, {"window": W, "ngram": N, "guesses": G, "accept": "reference"})
        for W, N, G in REFERENCE_RULE
    ]
    out.append(
        ("LA W7 N5 G7 +prompt", lookahead_decode, {"window": 7, "ngram": 5, "guesses": 7, "pool_from_prompt": True})
    )
    return out


def load_model(checkpoint: str, model_dir: str | None, device: str) -> tuple[MiniLLM, dict]:
    """A committed checkpoint (load_pretrained), or a training run directory holding state.pt."""
    if model_dir is not None and (Path(model_dir) / "state.pt").exists():
        state = torch.load(Path(model_dir) / "state.pt", weights_only=False, map_location="cpu")
        model = MiniLLM(ModelConfig(**state["config"]["model"]))
        model.load_state_dict(state["model"])
        return model.to(device).eval(), {"source": f"{model_dir}/state.pt", "steps": state["step"], "stand_in": True}
    try:
        model = load_pretrained(checkpoint, model_dir, device=device)
    except FileNotFoundError as e:
        sys.exit(f"{e}\n(train one, or point --model-dir at a run directory with a state.pt)")
    info = checkpoint_info(checkpoint, model_dir)
    source = {"source": f"checkpoint {checkpoint}", "steps": info.get("steps"), "stand_in": False}
    return model, {**source, "provisional": bool(info.get("provisional", False)), "sha256": info.get("sha256")}


def prompts(kind: str, n: int, length: int) -> list[list[int]]:
    """n prompts of BOS + `length` bytes from the test split, each starting at a line start."""
    text = data.load_text(kind, "test")
    out = []
    for i in range(n):
        start = text.find("\n", (i + 1) * len(text) // (n + 1)) + 1
        piece = text[start:].encode("utf-8")[:length]
        out.append([ByteTokenizer.bos_id, *piece])
    return out


def timed(decode, model: MiniLLM, prompt: list[int], new_tokens: int, kwargs: dict, repeats: int = 1):
    """(result, seconds): the fastest of `repeats` calls (the output is deterministic), GPU synchronized."""
    cuda = next(model.parameters()).is_cuda
    best = float("inf")
    for _ in range(repeats):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        result = decode(model, prompt, new_tokens, **kwargs)
        if cuda:
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return result, best


def run(
    model: MiniLLM, prompt_sets: dict[str, list[list[int]]], new_tokens: int, repeats: int = 2, quiet: bool = False
) -> list[dict]:
    """One row per (kind, method). Greedy is timed again beside every method on the same prompts,
    so that `speedup` compares runs made moments apart (other jobs on the machine come and go)."""
    rows = []
    timed(greedy, model, prompt_sets["code"][0], 8, {})  # warm-up (allocator, kernels)
    for kind, ps in prompt_sets.items():
        reference = [greedy(model, p, new_tokens).tokens for p in ps]
        greedy_steps = len(ps) * new_tokens
        for label, decode, kwargs in methods():
            steps, tokens, exact, seconds, greedy_seconds, most = 0, 0, True, 0.0, 0.0, 0
            for p, ref in zip(ps, reference, strict=True):
                greedy_seconds += timed(greedy, model, p, new_tokens, {}, repeats)[1]
                result, s = timed(decode, model, p, new_tokens, kwargs, repeats)
                seconds += s
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
                "speedup": round(greedy_seconds / seconds, 3),
                "max_accepted": most,
                "equals_greedy": exact,
            }
            rows.append(row)
            if not quiet:
                print(
                    f"{kind:5s} {label:22s} steps {steps:5d}  compression {row['compression']:5.2f}  "
                    f"{row['tokens_per_s']:8.1f} tok/s  speed-up {row['speedup']:5.2f}  max/step {most}  exact {exact}",
                    flush=True,
                )
    return rows


def summarize(rows: list[dict]) -> dict:
    """Per kind: greedy's tokens/s, Jacobi's best compression, and lookahead's best (W, N, G)."""
    summary = {"all_equal_greedy": all(r["equals_greedy"] for r in rows)}
    for kind in dict.fromkeys(r["kind"] for r in rows):
        sub = [r for r in rows if r["kind"] == kind]
        la = [r for r in sub if r["method"].startswith("LA ") and not r.get("pool_from_prompt")]
        ref = {(r["window"], r["ngram"], r["guesses"]): r for r in sub if r.get("accept") == "reference"}
        best = max(la, key=lambda r: r["compression"])
        fastest = max(la, key=lambda r: r["speedup"])
        keys = ("window", "ngram", "guesses", "compression", "tokens_per_s", "speedup")
        greedy_tps = next(r["tokens_per_s"] for r in sub if r["method"] == "greedy")
        summary[kind] = {
            "greedy_tokens_per_s": greedy_tps,
            "jacobi_best_compression": max(r["compression"] for r in sub if r["method"].startswith("jacobi")),
            "lookahead_best": {k: best[k] for k in keys},
            "lookahead_best_speedup": best["speedup"],
            "lookahead_fastest": {k: fastest[k] for k in keys},
            # (W, N, G): compression under the bonus rule (ours) and the reference's (at most N-1 a step)
            "compression_by_rule": {
                f"W{W} N{N} G{G}": {
                    "bonus": next(r["compression"] for r in la if (r["window"], r["ngram"], r["guesses"]) == (W, N, G)),
                    "reference": ref[W, N, G]["compression"],
                }
                for W, N, G in REFERENCE_RULE
                if (W, N, G) in ref
            },
        }
    return summary


def plot(rows: list[dict], path: Path, title: str, device_label: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r.get("accept") != "reference"]  # the figure shows the bonus rule
    kinds = list(dict.fromkeys(r["kind"] for r in rows))
    styles = {kind: ls for kind, ls in zip(kinds, ("-", "--", ":"), strict=False)}
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
    for kind in kinds:
        sub = [r for r in rows if r["kind"] == kind]
        for i, N in enumerate(NGRAMS):
            pts = sorted(
                (r["window"], r["compression"])
                for r in sub
                if r.get("ngram") == N and r["guesses"] == r["window"] and not r.get("pool_from_prompt")
            )
            axes[0].plot(*zip(*pts, strict=True), styles[kind], marker="o", color=f"C{i}", label=f"{kind}, N={N}")
        jac = max(r["compression"] for r in sub if r["method"].startswith("jacobi"))
        axes[0].axhline(jac, color="gray", ls=styles[kind], lw=0.8)
        axes[0].text(WINDOWS[-1], jac, f"best Jacobi ({kind})", fontsize=7, color="gray", ha="right", va="bottom")
        pts = sorted(
            (r["guesses"], r["compression"])
            for r in sub
            if r.get("window") == 7 and r.get("ngram") == 5 and not r.get("pool_from_prompt")
        )
        axes[1].plot(*zip(*pts, strict=True), styles[kind], marker="o", color="k", label=kind)
        for r in sub:
            color = "C3" if r["method"].startswith("jacobi") else ("C2" if r["method"] == "greedy" else "C0")
            marker = "o" if kind == kinds[0] else "^"
            axes[2].scatter(r["compression"], r["speedup"], color=color, marker=marker, s=18)
    top = max(r["compression"] for r in rows)
    axes[2].plot([1, top], [1, top], ":", color="gray", label="a step as cheap as a greedy step")
    axes[2].axhline(1.0, color="C2", lw=0.8, label="greedy")
    axes[0].set(
        xlabel="window W (G = W)", ylabel="step compression (greedy steps / steps)", title="compression vs W, N"
    )
    axes[1].set(xlabel="verification candidates G (W = 7, N = 5)", ylabel="step compression", title="compression vs G")
    axes[2].set(
        xlabel="step compression",
        ylabel="wall-clock speed-up over greedy",
        title=f"wall clock vs compression ({device_label})",
    )
    for kind in kinds:
        marker = "o" if kind == kinds[0] else "^"
        axes[2].scatter([], [], color="C0", marker=marker, label=f"lookahead ({kind})")
    axes[2].scatter([], [], color="C3", label="Jacobi")
    for ax in axes:
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="base", help="name of a committed checkpoint (default: base)")
    parser.add_argument("--model-dir", default=None, help="checkpoint directory, or a training run with state.pt")
    parser.add_argument("--prompts", type=positive_int, default=8, help="prompts per kind")
    parser.add_argument(
        "--prompt-len", type=positive_int, default=64, help="bytes per prompt (BOS + prompt + new <= 129)"
    )
    parser.add_argument("--new-tokens", type=positive_int, default=64)
    parser.add_argument(
        "--threads", type=positive_int, default=1, help="torch CPU threads (tiny forwards: 1 is fastest)"
    )
    parser.add_argument("--repeats", type=positive_int, default=2, help="time each decode this often, keep the fastest")
    parser.add_argument("--device", default="cpu", type=device_arg, help="cpu or cuda")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda but no GPU is visible")
    device_label = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {args.threads} thread(s)"
    model, source = load_model(args.checkpoint, args.model_dir, args.device)
    prompt_sets = {kind: prompts(kind, args.prompts, args.prompt_len) for kind in ("code", "prose")}
    start = time.perf_counter()
    rows = run(model, prompt_sets, args.new_tokens, args.repeats, args.quiet)
    seconds = time.perf_counter() - start
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "decoding" if device.type == "cpu" else f"decoding_{device.type}"
    report = {
        "model": {**source, "config": model.config.to_dict()},
        "settings": {
            k: getattr(args, k) for k in ("prompts", "prompt_len", "new_tokens", "threads", "repeats", "device")
        },
        "machine": {
            "device": device_label,
            "platform": platform.platform(),
            "processor": platform.processor(),
            "torch": torch.__version__,
        },
        "seconds": round(seconds, 1),
        "summary": summarize(rows),
        "results": rows,
    }
    (out / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    provisional = " (provisional)" if source.get("provisional") else ""
    title = (
        f"Decoding with {source['source']}{provisional}, {args.prompts} test prompts per kind, "
        f"{args.new_tokens} new tokens each; {device_label}"
    )
    plot(rows, out / f"{stem}.png", title, device_label)
    print(json.dumps(report["summary"], indent=1))
    print(f"wrote {out / stem}.json and .png in {seconds:.0f} s")


if __name__ == "__main__":
    main()
