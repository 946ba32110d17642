"""Chapters 00-03's checkers pass the package's functions, fail classic mistakes, and report stubs."""

import math

import torch

from minillm import masks
from minillm.attention import reference_attention
from minillm.cache import WindowCache
from minillm.checks import ch00, ch01, ch02, ch03
from minillm.model import MiniLLM
from minillm.rope import apply_rope
from minillm.tokenizer import ByteTokenizer


def stub(*args):
    raise NotImplementedError


def test_chapter_00_checkers(small_model, capsys):
    tok = ByteTokenizer()
    assert ch00.check_encode(lambda text: tok.encode(text, bos=True))
    assert ch00.check_count_parameters(lambda cfg: MiniLLM(cfg).num_parameters())
    assert ch00.check_bits_per_byte(lambda nll: nll / math.log(2))
    probs = lambda m, text: m(torch.tensor([tok.encode(text, bos=True)])).logits[0, -1].softmax(-1)  # noqa: E731
    assert ch00.check_next_byte_probs(probs, small_model.float())
    assert not ch00.check_encode(lambda text: list(text.encode("latin-1", errors="replace")))  # no BOS, not UTF-8
    assert not ch00.check_count_parameters(lambda cfg: MiniLLM(cfg).num_parameters() + cfg.vocab_size * cfg.d_model)
    assert not ch00.check_bits_per_byte(lambda nll: nll / math.log(10))
    assert not ch00.check_encode(stub)
    out = capsys.readouterr().out
    assert out.count("✅") == 4 and out.count("❌") == 3 and "⏳ TODO encode: not implemented yet" in out


def test_chapter_01_checkers(capsys):
    assert ch01.check_attention(lambda q, k, v, m: reference_attention(q, k, v, m)[0])
    assert ch01.check_causal_mask(lambda T, S: torch.ones(T, S, dtype=torch.bool).tril(S - T))
    assert ch01.check_rope(apply_rope)
    assert ch01.check_decode_step(
        lambda kc, vc, q, k, v: (reference_attention(q, torch.cat([kc, k], 2), torch.cat([vc, v], 2))[0],
                                 torch.cat([kc, k], 2), torch.cat([vc, v], 2))
    )  # fmt: skip
    assert not ch01.check_attention(lambda q, k, v, m: reference_attention(q * q.shape[-1] ** 0.5, k, v, m)[0])
    assert not ch01.check_causal_mask(lambda T, S: torch.ones(T, S, dtype=torch.bool).tril())  # is_causal's bug
    assert not ch01.check_rope(lambda x, p, b: apply_rope(x, p + 1, b))
    assert not ch01.check_decode_step(lambda kc, vc, q, k, v: (reference_attention(q, k, v)[0], kc, vc))
    assert not ch01.check_rope(stub)
    out = capsys.readouterr().out
    assert out.count("✅") == 4 and out.count("❌") == 4 and "⏳ TODO rope" in out


def test_chapter_02_checkers(capsys):
    assert ch02.check_keep(lambda n, w: WindowCache(w).keep(n))
    assert ch02.check_sliding_window_mask(masks.sliding_window)
    assert ch02.check_recompute_logits(lambda m, ids, t, w: m(ids[None, max(0, t - w) : t + 1]).logits[0, -1])
    assert ch02.check_kv_cache_bytes(lambda cfg, n, b=4: 2 * cfg.n_layers * n * cfg.d_model * b)
    assert not ch02.check_keep(lambda n, w: torch.arange(max(0, n - w - 1), n))  # keeps one too many
    assert not ch02.check_sliding_window_mask(lambda w: masks.sliding_window(w + 1))
    assert not ch02.check_recompute_logits(lambda m, ids, t, w: m(ids[None, : t + 1]).logits[0, -1])  # dense
    assert not ch02.check_kv_cache_bytes(lambda cfg, n, b=4: cfg.n_layers * n * cfg.d_model * b)  # forgot V
    assert not ch02.check_keep(stub)
    out = capsys.readouterr().out
    assert out.count("✅") == 4 and out.count("❌") == 4 and "⏳ TODO keep" in out


def test_chapter_03_checkers(small_model, capsys):
    from minillm.cache import SinkCache
    from minillm.probes import sink_mass

    assert ch03.check_sink_keep(lambda n, s, w: SinkCache(s, w).keep(n))
    assert ch03.check_cache_positions(lambda n, s, w: (min(n, s + w), torch.arange(min(n, s + w) + 1)))
    assert ch03.check_sink_mass(lambda m, ids, f: sink_mass(m, ids, f))
    assert ch03.check_off_by_one(lambda s: torch.softmax(torch.cat([torch.zeros_like(s[..., :1]), s], -1), -1)[..., 1:])
    assert not ch03.check_sink_keep(lambda n, s, w: WindowCache(s + w).keep(n))  # evicts the sinks
    assert not ch03.check_cache_positions(lambda n, s, w: (n, torch.arange(n + 1)))  # true positions
    assert not ch03.check_sink_mass(lambda m, ids, f: sink_mass(m, ids, 0))
    assert not ch03.check_off_by_one(lambda s: s.exp() / (1 + s.exp().sum(-1, keepdim=True)))  # overflows at 100
    assert not ch03.check_sink_keep(stub)
    out = capsys.readouterr().out
    assert out.count("✅") == 4 and out.count("❌") == 4 and "⏳ TODO sink_keep" in out
