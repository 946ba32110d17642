"""Part "decoding": lookahead and Jacobi decoding against greedy, in steps and wall clock, on a GPU.

On a CPU a lookahead step costs more than a greedy step (more tokens per forward), so the speed-up
of Fu et al. (2024, arXiv 2402.02057) can only show where a forward of a few dozen tokens costs as
much as a forward of one: on a GPU. Every output is compared with greedy's, token for token.
"""

from __future__ import annotations

from collections.abc import Callable

from minillm.decoding import greedy, jacobi_decode, lookahead_decode

from .common import Budget, for_each_model, wall_s
from .models import encode, test_prompts

METHODS = (  # (label, decoder, keyword arguments); greedy first: the others are compared with it
    ("greedy", greedy, {}),
    ("jacobi m=8", jacobi_decode, {"window": 8}),
    ("lookahead W7 N5 G7", lookahead_decode, {"window": 7, "ngram": 5, "guesses": 7}),
    ("lookahead W15 N5 G15", lookahead_decode, {"window": 15, "ngram": 5, "guesses": 15}),
)


def run_model(model, tokenizer, settings: dict, budget: Budget) -> list[dict]:
    """One row per (kind, method): steps, median wall clock summed over the prompts, equality with greedy."""
    cuda = settings["device"] == "cuda"
    rows = []
    for kind in ("code", "prose"):
        prompts = [encode(tokenizer, p) for p in test_prompts(kind, settings["prompts"], settings["prompt_chars"])]
        reference: list[list[int]] = []
        greedy_seconds = None
        for label, decode, kwargs in METHODS:
            if budget.spent():
                rows.append({"kind": kind, "method": label, "skipped": budget.reason()})
                continue
            steps, tokens, seconds, exact = 0, 0, 0.0, True
            for i, prompt in enumerate(prompts):
                result, s = wall_s(lambda p=prompt, d=decode, kw=kwargs: d(model, p, settings["new_tokens"], **kw),
                                   settings["repeats"], cuda)  # fmt: skip
                if label == "greedy":
                    reference.append(result.tokens)
                steps, tokens, seconds = steps + result.steps, tokens + len(result.tokens), seconds + s
                exact &= result.tokens == reference[i]
            greedy_seconds = seconds if label == "greedy" else greedy_seconds
            timed = settings["timed"]
            rows.append({
                "kind": kind, "method": label, **kwargs, "prompts": len(prompts), "steps": steps, "tokens": tokens,
                "compression": round(tokens / steps, 3),
                "seconds": round(seconds, 4) if timed else None,
                "tokens_per_s": round(tokens / seconds, 1) if timed else None,
                "speedup_vs_greedy": round(greedy_seconds / seconds, 3) if timed else None,
                "equals_greedy": exact,
            })  # fmt: skip
            print(f"  decoding {kind:5s} {label:21s} steps {steps:5d} exact {exact}", flush=True)
    return rows


def run(settings: dict, budget: Budget, save: Callable[[dict], None]) -> dict:
    """{"models": {name: {"rows": [...]} or {"skipped": why}}, "all_equal_greedy": bool}."""

    def measure(name: str, model, tokenizer, entry: dict, save_now: Callable[[], None]) -> None:
        entry["rows"] = run_model(model, tokenizer, settings, budget)

    result = for_each_model("decoding", settings, budget, save, measure)
    rows = [r for m in result["models"].values() for r in m.get("rows", []) if "skipped" not in r]
    result["all_equal_greedy"] = bool(rows) and all(r["equals_greedy"] for r in rows)
    return result


def plot(result: dict, path, title: str) -> None:
    """Per model and kind: step compression and wall-clock speed-up of each method over greedy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = {n: m["rows"] for n, m in result["models"].items() if "rows" in m}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    labels = [label for label, _, _ in METHODS]
    groups = [(n, kind) for n in measured for kind in ("code", "prose")]
    width = 0.8 / max(len(groups), 1)
    for g, (name, kind) in enumerate(groups):
        by_method = {r["method"]: r for r in measured[name] if r["kind"] == kind and "skipped" not in r}
        for ax, key in zip(axes, ("compression", "speedup_vs_greedy")):
            heights = [by_method.get(label, {}).get(key) or 0.0 for label in labels]
            ax.bar([i + g * width for i in range(len(labels))], heights, width, label=f"{name} {kind}")
    for ax, ylabel in zip(axes, ("tokens per step", "wall-clock speed-up over greedy")):
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(labels))], labels, fontsize=7, rotation=15)
        ax.axhline(1.0, color="gray", lw=0.8)
        ax.set(ylabel=ylabel)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
