"""The wrong-answer suite of chapters 00-04: every checker accepts the right answer and rejects at
least three plausible wrong ones (off-by-one, wrong axis, missing mask, wrong dtype, ignored
argument, hard-coded output, ...). Each wrong answer is a mistake a learner could make; the
comment says which."""

from __future__ import annotations

import math

import pytest
import torch

from minillm import masks
from minillm.attention import distance_limit, reference_attention
from minillm.cache import LambdaCache, SinkCache, WindowCache
from minillm.checks import ch00, ch01, ch02, ch03, ch04, reset_hints
from minillm.config import ModelConfig
from minillm.kv_cache import KVCache
from minillm.lambda_attention import block_keys, lambda_attention
from minillm.model import MiniLLM
from minillm.rope import apply_rope
from minillm.tokenizer import ByteTokenizer

BOS = ByteTokenizer.bos_id


@pytest.fixture(autouse=True)
def _fresh_hints():
    reset_hints()


@pytest.fixture(scope="module")
def model() -> MiniLLM:
    """A float32 model with the course's shape (a checker must not depend on training)."""
    torch.manual_seed(1)
    return MiniLLM(ModelConfig(d_model=32, n_layers=2, n_heads=2)).eval()


# ---- chapter 00 -------------------------------------------------------------------------------


def encode(text):
    return [BOS] + list(text.encode("utf-8"))


def _params(cfg, head=0, final_ln=1, ln_per_layer=2, ratio=None):
    C, r = cfg.d_model, cfg.mlp_ratio if ratio is None else ratio
    return (
        cfg.vocab_size * C * (1 + head) + cfg.n_layers * (4 * C * C + 2 * r * C * C + ln_per_layer * C) + final_ln * C
    )


def next_byte_probs(model, text):
    with torch.no_grad():
        return model(torch.tensor([[BOS, *text.encode("utf-8")]])).logits[0, -1].softmax(-1)


def _probs_of(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0, -1].softmax(-1)


def packed(rule):
    """packed_mask from a rule (doc_ids, q_idx, kv_idx) -> bool tensor."""
    return lambda doc: lambda b, h, q, k: rule(doc, q, k)


MODEL = object()  # stands for the `model` fixture in a checker's extra arguments


# ---- chapter 04 -------------------------------------------------------------------------------


def lam_mask(g, n_local, recent=lambda d, n: d < n, glob=lambda kv, g: kv < g, causal_globals=True, cast=None):
    def mask_mod(b, h, q, kv):
        m = (q >= kv) & (recent(q - kv, n_local) | glob(kv, g))
        if not causal_globals:
            m = m | glob(kv, g)
        return m if cast is None else m.to(cast)

    return mask_mod


def keys_per_query(T, g, n_local, start_shift=1, dtype=None):
    i = torch.arange(T)
    window_start = (i - n_local + start_shift).clamp(min=0)
    out = torch.minimum(i + 1, torch.tensor(n_local)) + window_start.clamp(max=g)
    return out if dtype is None else out.to(dtype)


def limited(q, k, limit, base=10000.0, scale=True, rotate_far_keys=False, sign=1, far_q=None):
    pos, D = torch.arange(q.shape[2]), q.shape[-1]
    s = D**0.5 if scale else 1.0
    near = apply_rope(q, pos, base) @ apply_rope(k, pos, base).transpose(-2, -1) / s
    q_far = apply_rope(q, torch.full_like(pos, limit if far_q is None else far_q), base)
    far = q_far @ (apply_rope(k, pos, base) if rotate_far_keys else k).transpose(-2, -1) / s
    return torch.where(sign * (pos[:, None] - pos[None, :]) > limit, far, near)


def dense_lambda(q, k, v, g, n_local, limit, mask_n_local=None, dim=-1, scores_limit=None, mask=True):
    T = q.shape[2]
    scores = limited(q, k, limit if scores_limit is None else scores_limit)
    if mask:
        m = masks.materialize(masks.lambda_shaped(g, n_local if mask_n_local is None else mask_n_local), T)
    else:
        m = torch.ones(T, T, dtype=torch.bool).tril()
    return scores.masked_fill(~m, float("-inf")).softmax(dim=dim).nan_to_num() @ v


def keys_of_block(start, stop, g, n_local, shift=1, globals_=None, order=1, end=0):
    window_start = max(0, start - n_local + shift)
    n = min(g, window_start) if globals_ is None else globals_
    parts = [torch.arange(n), torch.arange(window_start, stop + end)]
    return torch.cat(parts[::order])


# ---- chapter 03 -------------------------------------------------------------------------------


def sink_keep(n, s, w, recent=None, first=True):
    if n <= s + w:
        return None
    recent = w if recent is None else recent
    parts = [torch.arange(s), torch.arange(n - recent, n)]
    return torch.cat(parts if first else parts[::-1])


def positions(n, s, w, cap=None, extra=1, shift=0):
    m = min(n, s + w if cap is None else cap)
    return m + shift, torch.arange(m + extra)


def sink_mass(m, ids, f, key=0, dims=(0, 2), start=None):
    with torch.no_grad():
        attn = m(ids, return_attn=True).attn
    return torch.stack([a[:, :, (f if start is None else start) :, key].mean(dim=dims) for a in attn])


def off_by_one(s, dim=-1):
    m = s.amax(dim=dim, keepdim=True).clamp_min(0)
    e = (s - m).exp()
    return e / ((-m).exp() + e.sum(dim=dim, keepdim=True))


# ---- chapter 02 -------------------------------------------------------------------------------


def keep(n, window):
    return None if n <= window else torch.arange(n - window, n)


def window_mask(window, cmp=lambda d, w: d <= w, causal=True, cast=None):
    def mask_mod(b, h, q, kv):
        m = cmp(q - kv, window) & ((q >= kv) if causal else (kv - q <= window))
        return m if cast is None else m.to(cast)

    return mask_mod


def python_if_mask(window):
    def mask_mod(b, h, q, kv):
        if q >= kv and q - kv <= window:  # a Python `if` on tensors
            return torch.tensor(True)
        return torch.tensor(False)

    return mask_mod


def recompute(m, ids, t, window, start=None, stop=None, position=-1):
    start = max(0, t - window) if start is None else start
    with torch.no_grad():
        return m(ids[None, start : t + 1 if stop is None else stop]).logits[0, position]


def _notebook_model():  # the notebook's global `model`, a different model from the one passed in
    torch.manual_seed(3)
    return MiniLLM(ModelConfig(d_model=32, n_layers=2, n_heads=2)).eval()


def _bytes(cfg, n, size=4, kv=2, heads=1, layers=None):
    return kv * (cfg.n_layers if layers is None else layers) * n * cfg.d_model * size * heads


# ---- chapter 01 -------------------------------------------------------------------------------


def attention(q, k, v, mask=None, scale=None, fill=float("-inf"), dim=-1, invert=False):
    scores = q @ k.transpose(-2, -1) / (q.shape[-1] ** 0.5 if scale is None else scale)
    if mask is not None:
        scores = scores.masked_fill(mask if invert else ~mask, fill)
    return scores.softmax(dim=dim) @ v


def own_causal_mask(q, k, v, mask=None):  # ignores the mask it is given and builds a causal one
    T, S = q.shape[-2], k.shape[-2]
    return attention(q, k, v, torch.ones(T, S, dtype=torch.bool).tril(S - T))


def rope(x, positions, base=10000.0, sign=1, exponent=2, interleaved=False, dtype=torch.float64, shift=0):
    D = x.shape[-1]
    theta = base ** (-exponent * torch.arange(0, D // 2, dtype=dtype) / D)
    angles = (positions + shift)[:, None].to(dtype) * theta
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype) * sign
    if interleaved:  # pairs (2i, 2i + 1), the GPT-J convention, not the course's (i, i + D/2)
        x1, x2 = x[..., ::2], x[..., 1::2]
        return torch.stack([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1).flatten(-2)
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


def decode_step(k_cache, v_cache, q, k, v):
    k_cache, v_cache = torch.cat([k_cache, k], dim=2), torch.cat([v_cache, v], dim=2)
    return attention(q, k_cache, v_cache), k_cache, v_cache


def cached_attention(k_cache, v_cache, q, k, v, diagonal=None, new_first=False, grow=True):
    """The T new tokens' rows of a causal forward over cache + new; `diagonal` shifts the triangle."""
    k_all = torch.cat([k, k_cache] if new_first else [k_cache, k], dim=2)
    v_all = torch.cat([v, v_cache] if new_first else [v_cache, v], dim=2)
    T, S = q.shape[2], k_all.shape[2]
    mask = torch.ones(T, S, dtype=torch.bool).tril(S - T if diagonal is None else diagonal)
    return attention(q, k_all, v_all, mask), *((k_all, v_all) if grow else (k_cache, v_cache))


def one_new_token_at_a_time(k_cache, v_cache, q, k, v):  # each new query sees the cache and itself only
    outs = []
    for i in range(q.shape[2]):
        k_i, v_i = torch.cat([k_cache, k[:, :, i : i + 1]], 2), torch.cat([v_cache, v[:, :, i : i + 1]], 2)
        outs.append(attention(q[:, :, i : i + 1], k_i, v_i))
    return torch.cat(outs, 2), torch.cat([k_cache, k], 2), torch.cat([v_cache, v], 2)


def dilated_cache(window, n_recent=None, mask_mod=None):
    cache = KVCache()
    cache.mask_mod = ch02.dilated_window(window) if mask_mod is None else mask_mod
    cache.n_recent = 2 * window if n_recent is None else n_recent
    return cache


def true_sink_cache(n_sink, window, n_fixed=None, n_recent=None, in_cache=False, mask_mod=None):
    cache = KVCache()
    cache.mask_mod = masks.sink_window(n_sink, window) if mask_mod is None else mask_mod
    cache.n_fixed = n_sink if n_fixed is None else n_fixed
    cache.n_recent = window if n_recent is None else n_recent
    cache.positions_in_cache = in_cache
    return cache


CASES = {
    ch00.check_encode: (
        encode,
        {
            "no_bos": lambda t: list(t.encode("utf-8")),
            "bos_at_the_end": lambda t: list(t.encode("utf-8")) + [BOS],
            "code_points_not_bytes": lambda t: [BOS] + [ord(c) for c in t],
            "latin1": lambda t: [BOS] + list(t.encode("latin-1", errors="replace")),
            "bos_id_0": lambda t: [0] + list(t.encode("utf-8")),
            "a_tensor": lambda t: torch.tensor(encode(t)),
            "bytes_object": lambda t: bytes([0]) + t.encode("utf-8"),
            "empty_text_without_bos": lambda t: encode(t) if t else [],
        },
        (),
    ),
    ch00.check_count_parameters: (
        lambda cfg: _params(cfg),
        {
            "untied_head": lambda cfg: _params(cfg, head=1),
            "no_final_layernorm": lambda cfg: _params(cfg, final_ln=0),
            "no_layernorms": lambda cfg: _params(cfg, final_ln=0, ln_per_layer=0),
            "mlp_ratio_fixed_at_4": lambda cfg: _params(cfg, ratio=4),
            "float_count": lambda cfg: float(_params(cfg)),
            "hard_coded_default": lambda cfg: MiniLLM(ModelConfig()).num_parameters(),
            "vocab_fixed_at_259": lambda cfg: _params(ModelConfig(**{**cfg.__dict__, "vocab_size": 259})),
        },
        (),
    ),
    ch00.check_bits_per_byte: (
        lambda nll: nll / math.log(2),
        {
            "times_ln2": lambda nll: nll * math.log(2),
            "log10": lambda nll: nll / math.log(10),
            "log2_of_the_loss": lambda nll: math.log2(nll) if nll > 0 else 0.0,
            "per_bit_of_a_byte": lambda nll: nll / 8,
            "tensor": lambda nll: torch.tensor(nll / math.log(2)),
            "rounded": lambda nll: round(nll / math.log(2), 2),
        },
        (),
    ),
    ch00.check_next_byte_probs: (
        next_byte_probs,
        {
            "no_bos": lambda m, t: _probs_of(m, [*t.encode("utf-8")]) if t else next_byte_probs(m, t),
            "last_16_bytes": lambda m, t: _probs_of(m, [BOS, *t.encode("utf-8")][-16:]),
            "last_64_bytes": lambda m, t: _probs_of(m, [BOS, *t.encode("utf-8")][-64:]),
            "softmax_over_time": lambda m, t: m(torch.tensor([[BOS, *t.encode()]])).logits.softmax(1)[0, -1],
            "first_position": lambda m, t: m(torch.tensor([[BOS, *t.encode()]])).logits[0, 0].softmax(-1),
            "logits_not_probs": lambda m, t: m(torch.tensor([[BOS, *t.encode()]])).logits[0, -1],
            "log_probs": lambda m, t: next_byte_probs(m, t).log(),
            "ignores_the_model": lambda m, t: next_byte_probs(MODEL_SEEN_IN_THE_NOTEBOOK[0], t),
            "code_points": lambda m, t: _probs_of(m, [BOS, *(min(ord(c), 255) for c in t)]),
        },
        (MODEL,),
    ),
    ch00.check_packed_mask: (
        packed(lambda d, q, k: (q >= k) & (d[q] == d[k])),
        {
            "causal_only": packed(lambda d, q, k: q >= k),  # reads the documents before its own
            "same_document_only": packed(lambda d, q, k: d[q] == d[k]),  # peeks at its document's future
            "strictly_before": packed(lambda d, q, k: (q > k) & (d[q] == d[k])),  # a query without itself
            "previous_document_too": packed(lambda d, q, k: (q >= k) & (d[q] - d[k] <= 1)),
            "window_of_two": packed(lambda d, q, k: (q >= k) & (q - k <= 2) & (d[q] == d[k])),  # drops older bytes
            "python_and": packed(lambda d, q, k: (q >= k) and (d[q] == d[k])),
            "an_int_mask": packed(lambda d, q, k: ((q >= k) & (d[q] == d[k])).long()),
            "the_notebooks_documents": packed(lambda d, q, k: (q >= k) & (q < 3) & (k < 3) | (q == k)),
            "not_a_mask_mod": lambda doc: (doc[:, None] == doc[None, :]).tril(),
        },
        (),
    ),
    ch01.check_attention: (
        lambda q, k, v, m=None: reference_attention(q, k, v, m)[0],
        {
            "no_scaling": lambda q, k, v, m=None: attention(q, k, v, m, scale=1.0),
            "scale_by_D": lambda q, k, v, m=None: attention(q, k, v, m, scale=q.shape[-1]),
            "scale_by_sqrt_T": lambda q, k, v, m=None: attention(q, k, v, m, scale=q.shape[-2] ** 0.5),
            "softmax_over_queries": lambda q, k, v, m=None: attention(q, k, v, m, dim=-2),
            "mask_ignored": lambda q, k, v, m=None: attention(q, k, v),
            "mask_inverted": lambda q, k, v, m=None: attention(q, k, v, m, invert=True),
            "masked_score_0": lambda q, k, v, m=None: attention(q, k, v, m, fill=0.0),
            "own_causal_mask": own_causal_mask,
            "transposed_output": lambda q, k, v, m=None: attention(q, k, v, m).transpose(-2, -1),
        },
        (),
    ),
    ch01.check_causal_mask: (
        lambda T, S: torch.ones(T, S, dtype=torch.bool).tril(S - T),
        {
            "is_causal_bug": lambda T, S: torch.ones(T, S, dtype=torch.bool).tril(),
            "shift_sign_flipped": lambda T, S: torch.ones(T, S, dtype=torch.bool).tril(T - S),
            "no_diagonal": lambda T, S: torch.ones(T, S, dtype=torch.bool).tril(S - T - 1),
            "upper_triangle": lambda T, S: torch.ones(T, S, dtype=torch.bool).triu(S - T),
            "float_mask": lambda T, S: torch.ones(T, S).tril(S - T),
            "int_mask": lambda T, S: torch.ones(T, S, dtype=torch.long).tril(S - T),
            "square": lambda T, S: torch.ones(S, S, dtype=torch.bool).tril(),
            "all_true": lambda T, S: torch.ones(T, S, dtype=torch.bool),
        },
        (),
    ),
    ch01.check_rope: (
        rope,
        {
            "positions_shifted_by_one": lambda x, p, b=10000.0: rope(x, p, b, shift=1),
            "ignores_positions": lambda x, p, b=10000.0: rope(x, torch.arange(x.shape[-2]), b),
            "ignores_base": lambda x, p, b=10000.0: rope(x, p),
            "rotation_sign_flipped": lambda x, p, b=10000.0: rope(x, p, b, sign=-1),
            "theta_without_the_2": lambda x, p, b=10000.0: rope(x, p, b, exponent=1),
            "interleaved_pairs": lambda x, p, b=10000.0: rope(x, p, b, interleaved=True),
            "angles_in_float32": lambda x, p, b=10000.0: rope(x, p, b, dtype=torch.float32),
            "package_with_positions_plus_1": lambda x, p, b=10000.0: apply_rope(x, p + 1, b),
        },
        (),
    ),
    ch01.check_decode_step: (
        decode_step,
        {
            "caches_not_grown": lambda kc, vc, q, k, v: (
                attention(q, torch.cat([kc, k], 2), torch.cat([vc, v], 2)),
                kc,
                vc,
            ),
            "attends_only_to_the_new_token": lambda kc, vc, q, k, v: (
                attention(q, k, v),
                *decode_step(kc, vc, q, k, v)[1:],
            ),
            "new_token_first": lambda kc, vc, q, k, v: (
                decode_step(kc, vc, q, k, v)[0],
                torch.cat([k, kc], 2),
                torch.cat([v, vc], 2),
            ),
            "excludes_itself": lambda kc, vc, q, k, v: (attention(q, kc, vc), *decode_step(kc, vc, q, k, v)[1:]),
            "is_causal_true": lambda kc, vc, q, k, v: (
                torch.nn.functional.scaled_dot_product_attention(
                    q, torch.cat([kc, k], 2), torch.cat([vc, v], 2), is_causal=True
                ),
                *decode_step(kc, vc, q, k, v)[1:],
            ),
            "returns_a_list": lambda kc, vc, q, k, v: list(decode_step(kc, vc, q, k, v)),
            "cat_on_the_wrong_axis": lambda kc, vc, q, k, v: (
                attention(q, torch.cat([kc, k], 2), torch.cat([vc, v], 2)),
                torch.cat([kc, k], 1),
                torch.cat([vc, v], 1),
            ),
        },
        (),
    ),
    ch01.check_cached_attention: (
        cached_attention,
        {
            "no_mask": lambda kc, vc, q, k, v: decode_step(kc, vc, q, k, v),
            "is_causal_true_top_left": lambda kc, vc, q, k, v: cached_attention(kc, vc, q, k, v, diagonal=0),
            "one_diagonal_too_far": lambda kc, vc, q, k, v: cached_attention(kc, vc, q, k, v, diagonal=kc.shape[2] + 1),
            "new_tokens_first": lambda kc, vc, q, k, v: cached_attention(kc, vc, q, k, v, new_first=True),
            "caches_not_grown": lambda kc, vc, q, k, v: cached_attention(kc, vc, q, k, v, grow=False),
            "each_new_token_alone": one_new_token_at_a_time,
        },
        (),
    ),
    ch02.check_keep: (
        keep,
        {
            "keeps_one_too_many": lambda n, w: None if n <= w + 1 else torch.arange(n - w - 1, n),
            "keeps_one_too_few": lambda n, w: None if n <= w else torch.arange(n - w + 1, n),
            "evicts_at_exactly_window": lambda n, w: None if n < w else torch.arange(n - w, n),
            "keeps_the_oldest": lambda n, w: None if n <= w else torch.arange(w),
            "all_indices_not_none": lambda n, w: torch.arange(max(0, n - w), n),
            "float_indices": lambda n, w: None if n <= w else torch.arange(n - w, n, dtype=torch.float32),
            "a_list": lambda n, w: None if n <= w else list(range(n - w, n)),
            "a_bool_mask": lambda n, w: None if n <= w else torch.arange(n) >= n - w,
            "hard_coded_window_4": lambda n, w: keep(n, 4),
        },
        (),
    ),
    ch02.check_sliding_window_mask: (
        masks.sliding_window,
        {
            "strict_distance": lambda w: window_mask(w, cmp=lambda d, w: d < w),
            "window_plus_one": lambda w: window_mask(w + 1),
            "not_causal": lambda w: window_mask(w, causal=False),
            "float_mask": lambda w: window_mask(w, cast=torch.float32),
            "python_if": python_if_mask,
            "hard_coded_window_3": lambda w: window_mask(3),
            "causal_only": lambda w: lambda b, h, q, kv: q >= kv,
        },
        (),
    ),
    ch02.check_recompute_logits: (
        recompute,
        {
            "window_tokens_not_window_plus_one": lambda m, ids, t, w: recompute(m, ids, t, w, start=max(0, t - w + 1)),
            "no_clip_at_zero": lambda m, ids, t, w: recompute(m, ids, t, w, start=t - w),
            "dense": lambda m, ids, t, w: recompute(m, ids, t, w, start=0),
            "excludes_token_t": lambda m, ids, t, w: recompute(m, ids, t, w, stop=t) if t else recompute(m, ids, t, w),
            "first_position": lambda m, ids, t, w: recompute(m, ids, t, w, position=0),
            "probabilities": lambda m, ids, t, w: recompute(m, ids, t, w).softmax(-1),
            "ignores_the_model": lambda m, ids, t, w: recompute(_notebook_model().double(), ids, t, w),
        },
        (),
    ),
    ch02.check_kv_cache_bytes: (
        _bytes,
        {
            "forgets_v": lambda cfg, n, b=4: _bytes(cfg, n, b, kv=1),
            "float16_always": lambda cfg, n, b=4: _bytes(cfg, n, 2),
            "float32_always": lambda cfg, n, b=4: _bytes(cfg, n, 4),
            # float64 bytes and a forgotten V cancel out in float32: 1 * 8 == 2 * 4
            "float64_and_forgets_v": lambda cfg, n, b=4: cfg.n_layers * n * cfg.d_model * 8,
            "times_n_heads": lambda cfg, n, b=4: _bytes(cfg, n, b, heads=cfg.n_heads),
            "one_layer": lambda cfg, n, b=4: _bytes(cfg, n, b, layers=1),
            "max_seq_len_tokens": lambda cfg, n, b=4: _bytes(cfg, cfg.max_seq_len, b),
            "float_result": lambda cfg, n, b=4: _bytes(cfg, n, b) / 1,
            "one_token_more": lambda cfg, n, b=4: _bytes(cfg, n + 1, b),
        },
        (),
    ),
    ch02.check_dilated_cache: (
        dilated_cache,
        {
            "keeps_window_entries": lambda w: dilated_cache(w, n_recent=w),
            "keeps_window_plus_one": lambda w: dilated_cache(w, n_recent=w + 1),
            "keeps_one_too_many": lambda w: dilated_cache(w, n_recent=2 * w + 1),
            "keeps_everything": lambda w: dilated_cache(w, n_recent=10**6),
            "plain_window_of_2w": lambda w: WindowCache(2 * w),
            "undilated_mask": lambda w: dilated_cache(w, mask_mod=masks.sliding_window(2 * w)),
            "not_a_cache": lambda w: ch02.dilated_window(w),
        },
        (),
    ),
    ch03.check_sink_keep: (
        sink_keep,
        {
            "no_sinks": lambda n, s, w: None if n <= s + w else torch.arange(n - s - w, n),
            "sinks_inside_the_window": lambda n, s, w: sink_keep(n, s, w, recent=w - s),
            "recent_first": lambda n, s, w: sink_keep(n, s, w, first=False),
            "indices_not_none_when_exactly_full": lambda n, s, w: (
                None if n < s + w else torch.cat([torch.arange(s), torch.arange(max(s, n - w), n)])
            ),
            "one_recent_too_many": lambda n, s, w: sink_keep(n, s, w, recent=w + 1),
            "float_indices": lambda n, s, w: None if n <= s + w else sink_keep(n, s, w).float(),
            "a_list": lambda n, s, w: None if n <= s + w else sink_keep(n, s, w).tolist(),
            "hard_coded_4_sinks": lambda n, s, w: sink_keep(n, 4, w) if n > 4 + w else None,
        },
        (),
    ),
    ch03.check_cache_positions: (
        positions,
        {
            "true_positions": lambda n, s, w: (n, torch.arange(n + 1)),
            "capped_at_the_window": lambda n, s, w: positions(n, s, w, cap=w),
            "keys_without_the_new_token": lambda n, s, w: positions(n, s, w, extra=0),
            "query_one_further": lambda n, s, w: positions(n, s, w, shift=1),
            "float_k_pos": lambda n, s, w: (positions(n, s, w)[0], positions(n, s, w)[1].float()),
            "list_k_pos": lambda n, s, w: (positions(n, s, w)[0], positions(n, s, w)[1].tolist()),
            "float_q_pos": lambda n, s, w: (float(positions(n, s, w)[0]), positions(n, s, w)[1]),
            "tensor_q_pos": lambda n, s, w: (torch.tensor(positions(n, s, w)[0]), positions(n, s, w)[1]),  # spec: int
            "capped_one_too_low": lambda n, s, w: positions(n, s, w, cap=s + w - 1),
        },
        (),
    ),
    ch03.check_sink_mass: (
        sink_mass,
        {
            "first_query_ignored": lambda m, ids, f: sink_mass(m, ids, f, start=0),
            "last_key": lambda m, ids, f: sink_mass(m, ids, f, key=-1),
            "first_batch_only": lambda m, ids, f: sink_mass(m, ids[:1], f),
            "averaged_over_heads": lambda m, ids, f: sink_mass(m, ids, f).mean(-1, keepdim=True),
            "query_row_not_key_column": lambda m, ids, f: torch.stack(
                [a[:, :, 0, f:].mean(dim=(0, 2)) for a in m(ids, return_attn=True).attn]
            ),
            "ignores_the_model": lambda m, ids, f: sink_mass(_notebook_model(), ids, f),
            "one_query_late": lambda m, ids, f: sink_mass(m, ids, f, start=f + 1),
        },
        (),
    ),
    ch03.check_off_by_one: (
        off_by_one,
        {
            "plain_softmax": lambda s: s.softmax(-1),
            "naive_overflows": lambda s: s.exp() / (1 + s.exp().sum(-1, keepdim=True)),
            "clamps_at_80": lambda s: off_by_one(s.clamp(max=80)),
            "the_1_not_shifted": lambda s: (
                (s - s.amax(-1, keepdim=True)).exp() / (1 + (s - s.amax(-1, keepdim=True)).exp().sum(-1, keepdim=True))
            ),
            "plus_1_in_the_numerator_too": lambda s: (s.exp() + 1) / (1 + s.exp().sum(-1, keepdim=True)),
            "sums_over_the_first_axis": lambda s: off_by_one(s, dim=0),
            "sums_over_everything": lambda s: s.clamp(max=50).exp() / (1 + s.clamp(max=50).exp().sum()),
        },
        (),
    ),
    ch03.check_true_sink_cache: (
        true_sink_cache,
        {
            "streamingllm_positions_inside_the_cache": lambda s, w: true_sink_cache(s, w, in_cache=True),
            "the_package_sink_cache": lambda s, w: SinkCache(s, w),
            "keeps_everything": lambda s, w: true_sink_cache(s, w, n_recent=10**6),
            "one_recent_too_many": lambda s, w: true_sink_cache(s, w, n_recent=w + 1),
            "one_recent_too_few": lambda s, w: true_sink_cache(s, w, n_recent=w - 1),
            "sinks_evicted": lambda s, w: true_sink_cache(s, w, n_fixed=0),
            "window_mask_with_sinks_kept": lambda s, w: true_sink_cache(s, w, mask_mod=masks.sliding_window(w)),
            "not_a_cache": lambda s, w: masks.sink_window(s, w),
        },
        (),
    ),
    ch04.check_lambda_mask: (
        masks.lambda_shaped,
        {
            "n_local_besides_the_query": lambda g, n: lam_mask(g, n, recent=lambda d, n: d <= n),
            "global_keys_see_the_future": lambda g, n: lam_mask(g, n, causal_globals=False),
            "one_global_too_many": lambda g, n: lam_mask(g, n, glob=lambda kv, g: kv <= g),
            "float_mask": lambda g, n: lam_mask(g, n, cast=torch.float32),
            "no_global_keys": lambda g, n: lam_mask(0, n),
            "arguments_swapped": lambda g, n: lam_mask(n, max(g, 1)),
            "window_only_distance": lambda g, n: lam_mask(g, n, recent=lambda d, n: d.abs() < n, causal_globals=False),
        },
        (),
    ),
    ch04.check_keys_per_query: (
        keys_per_query,
        {
            "globals_counted_twice": lambda T, g, n: (
                torch.minimum(torch.arange(T) + 1, torch.tensor(n))
                + torch.minimum(torch.arange(T) + 1, torch.tensor(g))
            ),
            "always_n_global_extra": lambda T, g, n: torch.minimum(torch.arange(T) + 1, torch.tensor(n)) + g,
            "window_start_off_by_one": lambda T, g, n: keys_per_query(T, g, n, start_shift=0),
            "float_counts": lambda T, g, n: keys_per_query(T, g, n, dtype=torch.float32),
            "a_list": lambda T, g, n: keys_per_query(T, g, n).tolist(),
            "ignores_n_global": lambda T, g, n: torch.minimum(torch.arange(T) + 1, torch.tensor(n)),
            "dense_count": lambda T, g, n: torch.arange(T) + 1,
        },
        (),
    ),
    ch04.check_limited_scores: (
        lambda q, k, limit, base=10000.0: limited(q, k, limit, base),
        {
            "far_keys_rotated_too": lambda q, k, limit, base=10000.0: limited(q, k, limit, base, rotate_far_keys=True),
            "no_sqrt_d": lambda q, k, limit, base=10000.0: limited(q, k, limit, base, scale=False),
            "ignores_base": lambda q, k, limit, base=10000.0: limited(q, k, limit),
            "no_limit": lambda q, k, limit, base=10000.0: limited(q, k, 10**9, base),
            "far_on_the_wrong_side": lambda q, k, limit, base=10000.0: limited(q, k, limit, base, sign=-1),
            "far_query_at_limit_plus_1": lambda q, k, limit, base=10000.0: limited(q, k, limit, base, far_q=limit + 1),
            "causally_masked": lambda q, k, limit, base=10000.0: limited(q, k, limit, base).masked_fill(
                torch.ones(q.shape[2], q.shape[2], dtype=torch.bool).triu(1), float("-inf")
            ),
        },
        (),
    ),
    ch04.check_lambda_attention: (
        lambda_attention,
        {
            "n_local_where_limit_belongs": lambda q, k, v, g, n, limit: dense_lambda(
                q, k, v, g, n, limit, scores_limit=n
            ),
            "limit_where_n_local_belongs": lambda q, k, v, g, n, limit: dense_lambda(
                q, k, v, g, n, limit, mask_n_local=limit
            ),
            "no_limit": lambda q, k, v, g, n, limit: dense_lambda(q, k, v, g, n, limit, scores_limit=10**9),
            "causal_mask_only": lambda q, k, v, g, n, limit: dense_lambda(q, k, v, g, n, limit, mask=False),
            "softmax_over_queries": lambda q, k, v, g, n, limit: dense_lambda(q, k, v, g, n, limit, dim=-2),
            "package_without_limit": lambda q, k, v, g, n, limit: lambda_attention(q, k, v, g, n, 10**9),
            "no_global_keys": lambda q, k, v, g, n, limit: lambda_attention(q, k, v, 0, n, limit),
        },
        (),
    ),
    ch04.check_block_keys: (
        block_keys,
        {
            "every_global_key": lambda a, b, g, n: keys_of_block(a, b, g, n, globals_=g),
            "window_start_off_by_one": lambda a, b, g, n: keys_of_block(a, b, g, n, shift=0),
            "globals_last": lambda a, b, g, n: keys_of_block(a, b, g, n, order=-1),
            "stop_inclusive": lambda a, b, g, n: keys_of_block(a, b, g, n, end=1),
            "no_global_keys": lambda a, b, g, n: keys_of_block(a, b, g, n, globals_=0),
            "float_indices": lambda a, b, g, n: keys_of_block(a, b, g, n).float(),
            "a_list": lambda a, b, g, n: keys_of_block(a, b, g, n).tolist(),
        },
        (),
    ),
    ch04.check_unfixed_factors: (
        lambda variant: dict(ch04.UNFIXED)[variant],
        {
            "window_fixes_everything": lambda v: set() if v == "window only" else ch04.UNFIXED[v],
            "streaming_llm_loses_its_first_tokens": lambda v: {3} if v == "StreamingLLM" else ch04.UNFIXED[v],
            "dense_fails_all_three": lambda v: {1, 2, 3} if v == "dense" else ch04.UNFIXED[v],
            "limit_and_lambda_swapped": lambda v: {"Λ, no limit": {2}, "limit, no Λ": {1}}.get(v, ch04.UNFIXED[v]),
            "always_empty": lambda v: set(),
            "strings": lambda v: {str(f) for f in ch04.UNFIXED[v]},
            "a_list": lambda v: sorted(ch04.UNFIXED[v]),
        },
        (),
    ),
}


class LambdaKVCache(KVCache):
    """Chapter 04 exercise 8's cache, with the knobs a learner can get wrong."""

    def __init__(self, n_global, n_local, limit, n_fixed=None, n_recent=None, mask_mod=None, far=None):
        super().__init__()
        self.mask_mod = masks.lambda_shaped(n_global, n_local) if mask_mod is None else mask_mod
        self.n_fixed = n_global if n_fixed is None else n_fixed
        self.n_recent = n_local - 1 if n_recent is None else n_recent
        self.far = far or (lambda q_pos, k_pos: distance_limit(q_pos, k_pos, limit))

    def far_pairs(self, q_pos, k_pos):
        return self.far(q_pos, k_pos)


def _key_rotated_too(limit):  # the far pairs' keys rotated at their own positions: the true distance - limit
    return lambda q, k: {**distance_limit(q, k, limit), "far_k_pos": k}


CASES[ch04.check_lambda_cache] = (
    LambdaKVCache,
    {
        "keeps_n_local_recent": lambda g, n, L: LambdaKVCache(g, n, L, n_recent=n),  # the query counted twice
        "keeps_n_local_minus_2": lambda g, n, L: LambdaKVCache(g, n, L, n_recent=n - 2),
        "evicts_the_global_tokens": lambda g, n, L: LambdaKVCache(g, n, L, n_fixed=0),
        "causal_mask": lambda g, n, L: LambdaKVCache(g, n, L, mask_mod=masks.causal()),  # fine one by one only
        "no_distance_limit": lambda g, n, L: LambdaKVCache(g, n, L, far=lambda q, k: {}),
        "far_keys_rotated": lambda g, n, L: LambdaKVCache(g, n, L, far=_key_rotated_too(L)),
        "the_packages_cache": lambda g, n, L: LambdaCache(g, n, L),
        "not_a_cache": lambda g, n, L: masks.lambda_shaped(g, n),
    },
    (),
)

MODEL_SEEN_IN_THE_NOTEBOOK: list = []  # the global a learner's function might use instead of its argument

WRONG = [(check, name, wrong) for check, (_, wrongs, _) in CASES.items() for name, wrong in wrongs.items()]


def _extra(check, model):
    return tuple(model if a is MODEL else a for a in CASES[check][2])


@pytest.mark.parametrize("check", list(CASES), ids=lambda c: c.__name__)
def test_the_right_answer_passes_and_each_exercise_has_three_wrong_answers(check, model, capsys):
    assert len(CASES[check][1]) >= 3
    assert check(CASES[check][0], *_extra(check, model))
    assert "✅" in capsys.readouterr().out


@pytest.mark.parametrize("check, name, wrong", WRONG, ids=[f"{c.__name__}-{n}" for c, n, _ in WRONG])
def test_a_wrong_answer_is_rejected(check, name, wrong, model, checker_contract):
    MODEL_SEEN_IN_THE_NOTEBOOK[:] = [model]
    checker_contract.rejects(check, wrong, *_extra(check, model))


def _solution_lines(check) -> list[str]:
    """The code lines of the chapter's worked solutions (a hint must contain none of them)."""
    import re

    import nbformat

    from minillm.course import BEGIN, END, ROOT

    chapter = check.__module__.rsplit("ch", 1)[1]
    nb = nbformat.read(next((ROOT / "solutions").glob(f"{chapter}_*.ipynb")), as_version=4)
    bodies = [b for c in nb.cells if c.cell_type == "code" for b in re.findall(f"{BEGIN}\n(.*?){END}", c.source, re.S)]
    return [line.strip() for b in bodies for line in b.splitlines() if len(line.strip()) >= 12]


@pytest.mark.parametrize("check", list(CASES), ids=lambda c: c.__name__)
def test_hints_are_graded_and_none_holds_a_line_of_the_solution(check, model, capsys):
    MODEL_SEEN_IN_THE_NOTEBOOK[:] = [model]
    wrong = next(iter(CASES[check][1].values()))
    check(wrong, *_extra(check, model))
    first = capsys.readouterr().out
    check(wrong, *_extra(check, model))
    second = capsys.readouterr().out
    reset_hints()
    check(wrong, *_extra(check, model), hint=2)
    asked = capsys.readouterr().out
    assert "hint:" in first and "hint 2:" not in first and "hint=2" in first
    assert "hint 2:" in second and "hint 2:" in asked
    hints = "\n".join(line for line in second.splitlines() if line.lstrip().startswith("hint"))
    assert _solution_lines(check), "no solution found to compare the hints with"
    for line in _solution_lines(check):
        assert line not in hints, f"{check.__name__}'s hint gives the solution line {line!r}"
