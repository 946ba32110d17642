"""The Llama switches of ModelConfig (GQA, RMSNorm, SwiGLU, untied head) and the defaults that
must still be exactly the course's original model."""

import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from minillm.cache import DenseCache, LambdaCache, SinkCache, WindowCache
from minillm.config import ModelConfig
from minillm.course import ROOT
from minillm.decoding import greedy, lookahead_decode
from minillm.model import MiniLLM
from minillm.pretrained import load_pretrained, save_checkpoint
from minillm.streaming import stream_nll

ORIGINAL = "8598dd9"  # main before the Llama switches
GQA = ModelConfig(d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=32)
LLAMA = ModelConfig(
    d_model=32, n_layers=2, n_heads=4, n_kv_heads=1, norm="rmsnorm", mlp="swiglu", mlp_hidden=48, max_seq_len=32
)

_REFERENCE = """
import sys, torch
from minillm.pretrained import load_pretrained
torch.set_num_threads(1)  # as conftest does: the same kernels, so the same rounding
torch.set_grad_enabled(False)
ids = torch.tensor([[256] + list(b"In the beginning God created the heaven and the earth.")])
out = {}
for name in sys.argv[2:]:
    model = load_pretrained(name)
    out[name] = model(ids) if name == "megabyte" else model(ids).logits
torch.save(out, sys.argv[1])
"""


@pytest.mark.parametrize(
    "kwargs, error, field",
    [
        (dict(n_kv_heads=3), ValueError, "n_kv_heads"),
        (dict(n_kv_heads=0), ValueError, "n_kv_heads"),
        (dict(n_kv_heads=2.0), TypeError, "n_kv_heads"),
        (dict(norm="batchnorm"), ValueError, "norm"),
        (dict(mlp="relu"), ValueError, "mlp"),
        (dict(mlp_hidden=0), ValueError, "mlp_hidden"),
        (dict(tie_embeddings=1), TypeError, "tie_embeddings"),
        (dict(norm_eps=0.0), ValueError, "norm_eps"),
    ],
)
def test_bad_llama_fields_raise_naming_the_field(kwargs, error, field):
    with pytest.raises(error, match=field):
        ModelConfig(**kwargs)


def test_committed_checkpoints_give_bit_identical_logits_to_the_original_code(tmp_path):
    """The checkpoints' json lack the new fields; the defaults must be exactly the old model."""
    names = ["base", "sink_token", "flat", "megabyte"]
    src = tmp_path / "original"
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ORIGINAL, "minillm"], capture_output=True)
    if archive.returncode:
        pytest.skip(f"commit {ORIGINAL} is not in this checkout (shallow clone?)")
    src.mkdir()
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive.stdout, check=True)
    out = tmp_path / "reference.pt"
    env = {"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"}
    subprocess.run([sys.executable, "-c", _REFERENCE, str(out), *names], check=True, env=env, cwd=tmp_path)
    reference = torch.load(out)
    ids = torch.tensor([[256] + list(b"In the beginning God created the heaven and the earth.")])
    with torch.no_grad():
        for name in names:
            model = load_pretrained(name)
            logits = model(ids) if name == "megabyte" else model(ids).logits
            assert torch.equal(logits, reference[name].detach()), name


def test_default_config_builds_the_same_weights_from_the_same_seed():
    torch.manual_seed(0)
    default = MiniLLM(ModelConfig())
    torch.manual_seed(0)
    explicit = MiniLLM(ModelConfig(n_kv_heads=4, norm="layernorm", mlp="gelu", mlp_hidden=512, tie_embeddings=True))
    assert default.state_dict().keys() == explicit.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(default.state_dict().values(), explicit.state_dict().values()))


def _as_multi_head(model: MiniLLM) -> MiniLLM:
    """The multi-head model whose key/value heads are the GQA model's, repeated per query group."""
    c = model.config
    mha = MiniLLM(ModelConfig(**{**c.to_dict(), "n_kv_heads": None})).double().eval()
    state = model.state_dict()
    D, group = c.head_dim, c.n_heads // c.kv_heads
    for i in range(c.n_layers):
        q, k, v = state[f"blocks.{i}.attn.qkv.weight"].split([c.d_model, c.kv_heads * D, c.kv_heads * D])
        k, v = (t.view(c.kv_heads, D, -1).repeat_interleave(group, 0).reshape(c.d_model, -1) for t in (k, v))
        state[f"blocks.{i}.attn.qkv.weight"] = torch.cat([q, k, v])
    mha.load_state_dict(state)
    return mha


@pytest.mark.parametrize("config", [GQA, LLAMA], ids=["gqa", "llama"])
def test_gqa_equals_multi_head_attention_with_repeated_key_value_heads(config):
    torch.manual_seed(0)
    model = MiniLLM(config).double().eval()
    ids = torch.randint(0, 256, (2, 20))
    out, ref = model(ids, return_attn=True), _as_multi_head(model)(ids, return_attn=True)
    torch.testing.assert_close(out.logits, ref.logits, rtol=1e-10, atol=1e-10)
    assert out.attn[0].shape == (2, config.n_heads, 20, 20)


@pytest.mark.parametrize(
    "make", [DenseCache, lambda: WindowCache(6), lambda: SinkCache(2, 6), lambda: LambdaCache(2, 6, 6)]
)
def test_gqa_caches_store_kv_heads_and_stream_like_the_multi_head_model(make):
    torch.manual_seed(0)
    model = MiniLLM(LLAMA).double().eval()
    ids = torch.randint(0, 256, (30,))
    cache = make()
    nll = stream_nll(model, ids, cache)
    assert cache.keys[0].shape[1] == cache.values[0].shape[1] == LLAMA.kv_heads == 1
    torch.testing.assert_close(nll, stream_nll(_as_multi_head(model), ids, make()), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(stream_nll(model, ids, make(), chunk_size=7), nll, rtol=1e-9, atol=1e-9)


def test_dense_cache_token_by_token_equals_the_full_forward_under_gqa():
    torch.manual_seed(1)
    model = MiniLLM(LLAMA).double().eval()
    ids = torch.randint(0, 256, (1, 16))
    cache = DenseCache()
    steps = torch.cat([model(ids[:, t : t + 1], cache=cache).logits for t in range(16)], dim=1)
    torch.testing.assert_close(steps, model(ids).logits, rtol=1e-10, atol=1e-10)


def test_lookahead_equals_greedy_under_gqa():
    torch.manual_seed(2)
    model = MiniLLM(LLAMA).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(10.0)  # so a random model does not repeat one token
    prompt = list(b"for i in range(8):")
    want = greedy(model, prompt, 12).tokens
    assert lookahead_decode(model, prompt, 12, window=3, ngram=3, guesses=3).tokens == want


def test_rmsnorm_and_swiglu_compute_llamas_formulas():
    torch.manual_seed(0)
    block = MiniLLM(LLAMA).double().blocks[0]
    x = torch.randn(2, 5, 32, dtype=torch.float64)
    rms = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + LLAMA.norm_eps)
    torch.testing.assert_close(block.norm1(x), rms * block.norm1.weight)
    mlp = block.mlp
    swiglu = mlp.down.weight @ (torch.nn.functional.silu(x @ mlp.gate.weight.T) * (x @ mlp.up.weight.T)).unsqueeze(-1)
    torch.testing.assert_close(mlp(x), swiglu.squeeze(-1))
    assert mlp.up.weight.shape == (48, 32)


def test_an_untied_head_is_its_own_tensor_and_survives_a_save_and_load(tmp_path):
    torch.manual_seed(0)
    model = MiniLLM(ModelConfig(d_model=32, n_layers=1, n_heads=2, tie_embeddings=False)).eval()
    assert model.head.weight is not model.embed.weight
    save_checkpoint(model, "untied", {}, tmp_path)
    assert "head.weight" in load_file(tmp_path / "untied.safetensors")
    loaded = load_pretrained("untied", tmp_path)
    ids = torch.randint(0, 256, (1, 9))
    assert torch.equal(loaded(ids).logits, model(ids).logits)
