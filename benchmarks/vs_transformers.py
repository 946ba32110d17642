"""The course's SmolLM2 against Hugging Face transformers' LlamaForCausalLM on the same fp32 weights.

    python benchmarks/vs_transformers.py            # writes results/vs_transformers.json
    python benchmarks/vs_transformers.py --quick    # a smoke test, nothing written

What it measures, each part interleaved (every round runs every variant once, in turn, so a burst
of load on the shared machine hits all alike), medians over rounds, ratios from the same run:
- the machine's floor: memory bandwidth (a large copy) and fp32 matmul peak, hence the time to
  read the weights once (the floor of a one-token forward);
- prefill, tokens/s: our forward without a cache, through a `DenseCache`, and transformers';
- decode, ms/token with a cache of 256 and 1,024 tokens: ours (`DenseCache`) and transformers';
- the cost curve: one forward of 1..64 new tokens after 256 cached ones, ours and transformers';
- attempts at a flatter curve (n = 1 and 16): oneDNN prepacked linears, bf16 weights, fused
  gate/up projections, 2 threads; each recorded with what it costs or why it failed;
- lookahead and Jacobi against greedy on a code prompt (exact or not, time, per-step overhead:
  the share of a step spent outside the model's forward).
The load average is recorded before and after: other jobs share the 2 cores.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM

from minillm.cache import DenseCache
from minillm.decoding import greedy, jacobi_decode, lookahead_decode
from minillm.lookahead import LookaheadCache
from minillm.pretrained import load_pretrained, load_tokenizer
from minillm.validate import positive_int

RESULTS = Path(__file__).parent / "results"
CODE = '''def fibonacci(n):
    """Return the n-th Fibonacci number."""
    if n < 2:
        return n
    return fibonacci(n - 1) + fibonacci(n - 2)


def factorial(n):
    """Return n!."""
    if n < 2:
        return 1
    return n * factorial(n - 1)


def'''


def to_transformers(model) -> LlamaForCausalLM:
    """LlamaForCausalLM holding our model's weights (qkv split, the same rotate-half RoPE)."""
    c = model.config
    hf = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=c.vocab_size,
            hidden_size=c.d_model,
            intermediate_size=c.hidden_dim,
            num_hidden_layers=c.n_layers,
            num_attention_heads=c.n_heads,
            num_key_value_heads=c.kv_heads,
            max_position_embeddings=c.max_seq_len,
            rope_theta=c.rope_base,
            rms_norm_eps=c.norm_eps,
            tie_word_embeddings=c.tie_embeddings,
            attn_implementation="sdpa",
        )
    ).eval()
    C, kv = c.d_model, c.kv_heads * c.head_dim
    state = {"model.embed_tokens.weight": model.embed.weight, "model.norm.weight": model.norm.weight}
    state["lm_head.weight"] = model.head.weight
    for i, block in enumerate(model.blocks):
        p = f"model.layers.{i}."
        q, k, v = block.attn.qkv.weight.split([C, kv, kv])
        state.update({
            p + "self_attn.q_proj.weight": q, p + "self_attn.k_proj.weight": k, p + "self_attn.v_proj.weight": v,
            p + "self_attn.o_proj.weight": block.attn.proj.weight, p + "mlp.gate_proj.weight": block.mlp.gate.weight,
            p + "mlp.up_proj.weight": block.mlp.up.weight, p + "mlp.down_proj.weight": block.mlp.down.weight,
            p + "input_layernorm.weight": block.norm1.weight, p + "post_attention_layernorm.weight": block.norm2.weight,
        })  # fmt: skip
    hf.load_state_dict({name: t.detach().clone() for name, t in state.items()})
    return hf


def interleaved(fns: dict, rounds: int) -> dict[str, float]:
    """Median seconds of each fn, every round running each once in turn."""
    times = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def machine_floor(weight_bytes: int) -> dict:
    a = torch.empty(64 * 2**20)  # 256 MiB: far beyond any cache
    b = torch.empty_like(a)
    copy_s = min(interleaved({"copy": lambda: b.copy_(a)}, 1)["copy"] for _ in range(5))
    gbs = 2 * a.numel() * 4 / copy_s / 1e9  # read + write
    x, w = torch.randn(1024, 1024), torch.randn(1024, 1024)
    mm_s = min(interleaved({"mm": lambda: x @ w}, 1)["mm"] for _ in range(5))
    return {
        "bandwidth_GBps": round(gbs, 1),
        "matmul_GFLOPs": round(2 * 1024**3 / mm_s / 1e9, 1),
        "weights_MB": round(weight_bytes / 1e6, 1),
        "weights_read_ms": round(1000 * weight_bytes / (gbs * 1e9), 1),
    }


@torch.no_grad()
def prefill(ours, hf, sizes: list[int], rounds: int) -> list[dict]:
    rows = []
    for n in sizes:
        ids = torch.randint(ours.config.vocab_size, (1, n), generator=torch.Generator().manual_seed(n))
        fns = {
            "ours_no_cache": lambda ids=ids: ours(ids),
            "ours_dense_cache": lambda ids=ids: ours(ids, cache=DenseCache()),
            "transformers": lambda ids=ids: hf(ids, use_cache=True),
        }
        med = interleaved(fns, rounds)
        row = {"tokens": n, **{f"{k}_tok_per_s": round(n / s, 1) for k, s in med.items()}}
        row["dense_over_no_cache"] = round(med["ours_dense_cache"] / med["ours_no_cache"], 3)
        row["dense_over_transformers"] = round(med["ours_dense_cache"] / med["transformers"], 3)
        row["load_average"] = round(os.getloadavg()[0], 2)
        row["rounds"] = rounds
        print("prefill", row, flush=True)
        rows.append(row)
    return rows


@torch.no_grad()
def decode(ours, hf, sizes: list[int], steps: int) -> list[dict]:
    rows = []
    for size in sizes:
        ids = torch.randint(ours.config.vocab_size, (1, size + steps), generator=torch.Generator().manual_seed(size))
        cache = DenseCache()
        ours(ids[:, :size], cache=cache)
        past = hf(ids[:, :size], use_cache=True).past_key_values
        times = {"ours": [], "transformers": []}
        for t in range(size, size + steps):
            token = ids[:, t : t + 1]
            start = time.perf_counter()
            ours(token, cache=cache)
            times["ours"].append(time.perf_counter() - start)
            start = time.perf_counter()
            past = hf(token, past_key_values=past, use_cache=True).past_key_values
            times["transformers"].append(time.perf_counter() - start)
        med = {k: 1000 * statistics.median(v) for k, v in times.items()}
        row = {"cache": size, **{f"{k}_ms": round(v, 2) for k, v in med.items()}}
        row["ours_over_transformers"] = round(med["ours"] / med["transformers"], 3)
        row["load_average"] = round(os.getloadavg()[0], 2)
        print("decode", row, flush=True)
        rows.append(row)
    return rows


def ours_forward(model, context: int):
    """fn(n): one forward of n new tokens after `context` cached ones, dropped afterwards."""
    ids = torch.randint(model.config.vocab_size, (1, context + 64), generator=torch.Generator().manual_seed(1))
    cache = LookaheadCache()
    model(ids[:, :context], cache=cache)

    def run(n: int) -> None:
        cache.plan(torch.arange(n), torch.ones(n, n, dtype=torch.bool).tril())
        model(ids[:, context : context + n], cache=cache)
        cache.commit([])

    return run


def hf_forward(hf, vocab: int, context: int):
    ids = torch.randint(vocab, (1, context + 64), generator=torch.Generator().manual_seed(1))
    past = hf(ids[:, :context], use_cache=True).past_key_values

    def run(n: int) -> None:
        hf(ids[:, context : context + n], past_key_values=past, use_cache=True)
        past.crop(-n)  # drop the n new entries

    return run


@torch.no_grad()
def cost_curve(ours, hf, sizes: list[int], context: int, rounds: int) -> dict:
    run_ours, run_hf = ours_forward(ours, context), hf_forward(hf, ours.config.vocab_size, context)
    fns = {}
    for n in sizes:
        fns[("ours", n)] = lambda n=n: run_ours(n)
        fns[("transformers", n)] = lambda n=n: run_hf(n)
    med = interleaved(fns, rounds)
    curve = {}
    for who in ("ours", "transformers"):
        one = med[(who, 1)]
        curve[who] = [
            {"n_new": n, "ms": round(1000 * med[(who, n)], 2), "over_one_token": round(med[(who, n)] / one, 2)}
            for n in sizes
        ]
    print("cost curve", json.dumps(curve), flush=True)
    return curve


@torch.no_grad()
def attempts(ours, context: int, rounds: int) -> dict:
    """What a 16-token forward costs against a 1-token one, for each attempt at a flatter curve."""
    out, variants = {}, {"fp32": ours}
    try:
        from torch.utils import mkldnn

        variants["onednn_prepacked_linear"] = mkldnn.to_mkldnn(copy.deepcopy(ours))
    except Exception as error:  # recorded: the finding is why it cannot be used
        out["onednn_prepacked_linear"] = {"error": f"{type(error).__name__}: {error}"[:300]}
    variants["bf16_weights"] = copy.deepcopy(ours).to(torch.bfloat16)
    runs = {}
    for name, model in variants.items():
        try:
            run = ours_forward(model, context)
            run(1)
            runs[name] = run
        except Exception as error:
            out[name] = {"error": f"{type(error).__name__}: {error}"[:300]}
    fns = {(name, n): (lambda run=run, n=n: run(n)) for name, run in runs.items() for n in (1, 16)}
    threads = torch.get_num_threads()
    fns[("2_threads", 1)] = lambda: _with_threads(2, lambda: runs["fp32"](1))
    fns[("2_threads", 16)] = lambda: _with_threads(2, lambda: runs["fp32"](16))
    med = interleaved(fns, rounds)
    torch.set_num_threads(threads)
    for name in {k[0] for k in fns}:
        one, sixteen = med[(name, 1)], med[(name, 16)]
        out[name] = {"ms_1": round(1000 * one, 2), "ms_16": round(1000 * sixteen, 2), "ratio": round(sixteen / one, 2)}
    out["fused_gate_up_matmul"] = fused_gate_up(ours, rounds)
    print("attempts", json.dumps(out), flush=True)
    return out


def _with_threads(n: int, fn) -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        fn()
    finally:
        torch.set_num_threads(before)


def fused_gate_up(model, rounds: int) -> dict:
    """The MLP's gate and up projections as one matmul against two, all 30 layers, n = 1 and 16."""
    mlps = [b.mlp for b in model.blocks]
    fused = [torch.cat([m.gate.weight, m.up.weight]).detach() for m in mlps]
    res = {}
    for n in (1, 16):
        x = torch.randn(1, n, model.config.d_model)
        med = interleaved(
            {
                "separate": lambda x=x: [(F.linear(x, m.gate.weight), F.linear(x, m.up.weight)) for m in mlps],
                "fused": lambda x=x: [F.linear(x, w).chunk(2, dim=-1) for w in fused],
            },
            rounds,
        )
        res[f"n{n}"] = {k: round(1000 * v, 2) for k, v in med.items()}
    return res


def timed_decode(decode_fn, model, prompt: list[int], n: int, **kw) -> tuple[list[int], float, int, float]:
    """(tokens, seconds, steps, share of the time spent outside the model's forward)."""
    inside = [0.0]
    original = model.forward

    def forward(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            inside[0] += time.perf_counter() - start

    model.forward = forward
    try:
        start = time.perf_counter()
        result = decode_fn(model, prompt, n, **kw)
        total = time.perf_counter() - start
    finally:
        del model.forward
    return result.tokens, total, result.steps, (total - inside[0]) / inside[0]


def decoders(model, new_tokens: int, configs: list[tuple[int, int, int]]) -> list[dict]:
    prompt = load_tokenizer("smollm2-135m").encode(CODE)
    reference, g_s, _, g_over = timed_decode(greedy, model, prompt, new_tokens)
    rows = [{"method": "greedy", "seconds": round(g_s, 2), "steps": new_tokens, "overhead": round(g_over, 3)}]
    runs = [("jacobi", jacobi_decode, {"window": 8})]
    for w, n, g in configs:
        runs.append((f"lookahead W={w} N={n} G={g}", lookahead_decode, {"window": w, "ngram": n, "guesses": g}))
    w, n, g = configs[0]
    kw = {"window": w, "ngram": n, "guesses": g, "pool_from_prompt": True}
    runs.append((f"lookahead W={w} N={n} G={g} +prompt pool", lookahead_decode, kw))
    for name, fn, kw in runs:
        tokens, s, steps, over = timed_decode(fn, model, prompt, new_tokens, **kw)
        rows.append({
            "method": name, "seconds": round(s, 2), "steps": steps, "tokens_per_step": round(new_tokens / steps, 2),
            "exact": tokens == reference, "over_greedy": round(s / g_s, 2), "overhead": round(over, 3),
        })  # fmt: skip
        print("decoder", rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=positive_int, default=1)
    parser.add_argument("--rounds", type=positive_int, default=3)
    parser.add_argument("--prefill", type=positive_int, nargs="+", default=[512, 2048], help="prefill lengths")
    parser.add_argument(
        "--prefill-rounds", type=positive_int, nargs="+", default=[3, 2], help="rounds per prefill length"
    )
    parser.add_argument("--new-tokens", type=positive_int, default=48, help="tokens each decoder generates")
    parser.add_argument("--quick", action="store_true", help="small sizes, 1 round, nothing written")
    parser.add_argument("--out", type=Path, default=RESULTS / "vs_transformers.json")
    args = parser.parse_args()
    if len(args.prefill) != len(args.prefill_rounds):
        parser.error(
            f"argument --prefill-rounds: give one per --prefill length "
            f"({len(args.prefill)}), got {len(args.prefill_rounds)}"
        )
    torch.set_num_threads(args.threads)
    ours = load_pretrained("smollm2-135m").eval()
    hf = to_transformers(ours)
    ids = torch.randint(ours.config.vocab_size, (1, 12))
    with torch.no_grad():
        agree = (ours(ids).logits - hf(ids).logits).abs().max().item()
    weight_bytes = sum(p.numel() * p.element_size() for p in ours.parameters())
    quick = args.quick
    rounds = 1 if quick else args.rounds
    result = {
        "threads": args.threads,
        "rounds": rounds,
        "torch": torch.__version__,
        "cpu_flags_bf16": [f for f in ("avx512_bf16", "amx_bf16") if f in Path("/proc/cpuinfo").read_text()],
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
        "max_abs_logit_difference": agree,
        "floor": machine_floor(weight_bytes),
    }
    print("floor", result["floor"], "logits differ by", agree, flush=True)
    lengths = {64: 1} if quick else dict(zip(args.prefill, args.prefill_rounds, strict=True))
    result["prefill"] = [row for n, r in lengths.items() for row in prefill(ours, hf, [n], r)]
    result["decode"] = decode(ours, hf, [64] if quick else [256, 1024], 4 if quick else 8)
    sizes = [1, 2, 4] if quick else [1, 2, 4, 8, 16, 32, 64]
    result["cost_curve"] = cost_curve(ours, hf, sizes, 64 if quick else 256, rounds)
    result["attempts"] = attempts(ours, 64 if quick else 256, rounds)
    configs = [(3, 3, 3)] if quick else [(3, 3, 3), (5, 4, 5), (7, 5, 7)]
    result["decoders"] = decoders(ours, 8 if quick else args.new_tokens, configs)
    result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    if not quick:
        args.out.parent.mkdir(exist_ok=True, parents=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
