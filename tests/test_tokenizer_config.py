import pytest

from minillm.config import ModelConfig
from minillm.tokenizer import ByteTokenizer


def test_encode_is_utf8_bytes_and_decode_inverts_it():
    tok = ByteTokenizer()
    text = "déjà vu: λ → ∞\n"
    ids = tok.encode(text)
    assert ids == list(text.encode("utf-8"))
    assert tok.decode(ids) == text


def test_bos_comes_first_and_specials_are_distinct_ids_above_bytes():
    tok = ByteTokenizer()
    assert tok.encode("a", bos=True) == [tok.bos_id, 97]
    assert len({tok.bos_id, tok.sink_id, tok.pad_id}) == 3
    assert min(tok.bos_id, tok.sink_id, tok.pad_id) >= 256
    assert tok.vocab_size == max(tok.bos_id, tok.sink_id, tok.pad_id) + 1


def test_decode_drops_or_shows_special_tokens_and_replaces_broken_utf8():
    tok = ByteTokenizer()
    ids = [tok.bos_id, *tok.encode("hi"), tok.sink_id]
    assert tok.decode(ids) == "hi"
    assert tok.decode(ids, show_special=True) == "<bos>hi<sink>"
    assert tok.decode([0xC3]) == "\ufffd"  # half of "é"


def test_config_defaults_are_small_and_consistent():
    cfg = ModelConfig()
    assert cfg.vocab_size == ByteTokenizer.vocab_size
    assert cfg.head_dim * cfg.n_heads == cfg.d_model


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"d_model": 0}, "d_model must be an int >= 1"),
        ({"n_layers": -1}, "n_layers must be an int >= 1"),
        ({"d_model": 30, "n_heads": 4}, "divisible by n_heads"),
        ({"d_model": 12, "n_heads": 4}, "must be even for RoPE"),
        ({"rope_base": 1.0}, "rope_base must be > 1"),
        ({"max_seq_len": 0}, "max_seq_len must be an int >= 1"),
        ({"norm_eps": 0.0}, "norm_eps must be > 0"),
    ],
)
def test_bad_config_raises_value_error_naming_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**kwargs)


def test_config_rejects_non_integer_sizes():
    with pytest.raises(TypeError, match="n_heads must be an int"):
        ModelConfig(n_heads=4.0)
    with pytest.raises(TypeError, match="text must be a str"):
        ByteTokenizer().encode(b"bytes")
