"""The tour's picture of one forward draws what the tokenizer and the model really do."""

import dataclasses

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from minillm import masks  # noqa: E402
from minillm.forward_pictures import ForwardPath, forward_path, plot_forward_path  # noqa: E402
from minillm.tokenizer import ByteTokenizer  # noqa: E402

TEXT = "Let λ be"  # λ: two bytes, so ids and characters differ in number


def true_to_the_model(path: ForwardPath, model, text: str) -> None:
    """What the tour's cell asserts, and more: the picture's three panels are the package's."""
    ids = ByteTokenizer().encode(text, bos=True)
    assert path.tokens == ids, "the ids are the tokenizer's, BOS first"
    assert torch.equal(path.read, masks.materialize(masks.causal(), len(ids))), "the model reads the causal mask"
    with torch.no_grad():
        expected = model(torch.tensor([ids])).logits[0, -1].softmax(-1)
    torch.testing.assert_close(path.next_probs, expected)


def test_the_path_is_the_tokenizers_ids_the_causal_mask_and_the_last_distribution(small_model):
    true_to_the_model(forward_path(small_model, TEXT), small_model, TEXT)


def _first_position(path, model):
    with torch.no_grad():
        return model(torch.tensor([path.tokens])).logits[0, 0].softmax(-1)


WRONG = {  # drawing functions a plausible slip would give; each must fail the check above
    "ids without BOS": lambda p, m: dataclasses.replace(p, tokens=p.tokens[1:]),
    "mask transposed": lambda p, m: dataclasses.replace(p, read=p.read.T.contiguous()),
    "keys before the query only": lambda p, m: dataclasses.replace(p, read=p.read.tril(-1)),
    "distribution at the first position": lambda p, m: dataclasses.replace(p, next_probs=_first_position(p, m)),
    "logits, not probabilities": lambda p, m: dataclasses.replace(p, next_probs=p.next_probs.log()),
}


@pytest.mark.parametrize("slip", WRONG)
def test_a_wrong_drawing_fails_the_check(small_model, slip):
    with pytest.raises(AssertionError):
        true_to_the_model(WRONG[slip](forward_path(small_model, TEXT), small_model), small_model, TEXT)


def test_the_mask_is_read_from_the_model_not_assumed(small_model, monkeypatch):
    """A model that applied another mask shows that mask: the picture does not draw masks.causal()."""
    forward = small_model.forward
    monkeypatch.setattr(small_model, "forward", lambda ids, **kw: forward(ids, mask_mod=masks.sliding_window(2), **kw))
    path = forward_path(small_model, TEXT)
    assert torch.equal(path.read, masks.materialize(masks.sliding_window(2), len(path.tokens)))


def test_the_drawing_shows_every_id_the_read_keys_and_the_top_tokens(small_model):
    path = forward_path(small_model, TEXT)
    ids_ax, mask_ax, next_ax = plot_forward_path(path, top_k=3)
    assert [t.get_text() for t in ids_ax.texts[1::2]] == [str(t) for t in path.tokens]
    assert torch.equal(torch.tensor(~mask_ax.get_images()[0].get_array().mask), path.read)
    heights = [bar.get_width() for bar in next_ax.patches]
    torch.testing.assert_close(torch.tensor(heights, dtype=path.next_probs.dtype), path.next_probs.topk(3).values)
    plt.close("all")


def test_bad_inputs_are_refused(small_model):
    with pytest.raises(TypeError, match="model"):
        forward_path(object(), TEXT)
    with pytest.raises(TypeError, match="text"):
        forward_path(small_model, b"bytes")
    with pytest.raises(ValueError, match="training context"):
        forward_path(small_model, "x" * small_model.config.max_seq_len)
    with pytest.raises(TypeError, match="path"):
        plot_forward_path(torch.zeros(3))
    with pytest.raises(ValueError, match="top_k"):
        plot_forward_path(forward_path(small_model, TEXT), top_k=0)
