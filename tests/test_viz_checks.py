import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from minillm import explorer, masks, viz  # noqa: E402
from minillm.check_env import main as check_env  # noqa: E402
from minillm.checks import ch00, ch01, run_check  # noqa: E402
from minillm.explorer import attention_explorer  # noqa: E402
from minillm.viz import attention_grid, plot_attention, plot_curves, plot_mask  # noqa: E402


def test_plot_mask_draws_exactly_the_materialized_mask():
    ax = plot_mask(masks.sink_window(2, 3), n=12)
    image = ax.get_images()[0].get_array()
    assert torch.equal(torch.tensor(~image.mask), masks.materialize(masks.sink_window(2, 3), 12))
    assert "attend" in ax.get_title()
    plt.close("all")


def test_attention_grid_has_one_panel_per_layer_and_head(small_model):
    attn = small_model(torch.randint(0, 256, (1, 10)), return_attn=True).attn
    fig = attention_grid(attn)
    assert len(fig.axes) == small_model.config.n_layers * small_model.config.n_heads + 1  # + one colorbar
    assert len({tuple(ax.get_images()[0].get_clim()) for ax in fig.axes[:-1]}) == 1  # one shared scale
    ax = plot_attention(attn[0][0, 0], tokens=list(range(10)))
    assert len(ax.get_xticklabels()) == 10
    plt.close("all")


def test_attention_grid_labels_rows_with_the_layers_drawn(small_model):
    attn = small_model(torch.randint(0, 256, (1, 10)), return_attn=True).attn
    fig = attention_grid(attn[1:2], layers=[1])
    assert fig.axes[0].get_ylabel().startswith("layer 1")
    with pytest.raises(ValueError, match="layers must name one layer per map"):
        attention_grid(attn, layers=[0])
    plt.close("all")


def test_plots_reject_tensors_of_the_wrong_shape(small_model):
    attn = small_model(torch.randint(0, 256, (1, 6)), return_attn=True).attn
    with pytest.raises(ValueError, match="mask must be 2-D"):
        plot_mask(torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="weights must be one 2-D map"):
        plot_attention(attn[0][0])  # (H, T, S): a head index is missing
    with pytest.raises(ValueError, match="attn must be a non-empty list"):
        attention_grid(attn[0])  # one layer's tensor instead of the list
    with pytest.raises(ValueError, match="attn must be a non-empty list"):
        attention_grid([])
    plt.close("all")


def test_plot_curves_smooths_with_a_running_mean():
    ax = plot_curves({"a": [0.0, 2.0, 4.0, 6.0]}, smooth=2)
    assert ax.get_lines()[0].get_ydata().tolist() == [1.0, 3.0, 5.0]
    plt.close("all")


def test_plot_curves_draws_against_the_given_x_and_keeps_vline_labels_inside():
    ax = plot_curves({"a": [1.0, 2.0, 3.0, 4.0]}, x=[0, 16, 32, 48], smooth=2, vlines={"T": 32}, logy=True)
    assert ax.get_lines()[0].get_xdata().tolist() == [16.0, 32.0, 48.0]
    label = ax.texts[0]
    assert label.get_position() == (32, 0.97) and label.get_transform() == ax.get_xaxis_transform()
    with pytest.raises(ValueError, match="x has 2 points"):
        plot_curves({"a": [1.0, 2.0, 3.0]}, x=[0, 1])
    plt.close("all")


def test_plot_curves_keeps_labels_apart_and_the_legend_off_the_data():
    ax = plot_curves({"a": [1.0] * 100}, vlines={"T": 50, "W": 45, "far": 95})
    ax.figure.canvas.draw()
    boxes = {t.get_text().strip(): t.get_window_extent() for t in ax.texts}
    assert not boxes["W"].overlaps(boxes["T"])  # 5 % of the axis apart: the second label drops a row
    assert boxes["far"].y1 == boxes["W"].y1  # far from the others: back on the top row
    assert ax.get_legend().get_window_extent().x0 >= ax.get_window_extent().x1  # beside the axes
    plt.close("all")


def test_plot_curves_labels_a_narrow_log_axis_in_plain_numbers():
    ax = plot_curves({"a": [1.3, 7.0]}, logy=True)
    ax.figure.canvas.draw()
    labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    assert labels == ["2", "3", "5"]  # plain numbers inside [1.3, 7], none of matplotlib's "6 x 10^0"
    assert not [t.get_text() for t in ax.get_yticklabels(minor=True) if t.get_text()]
    plt.close("all")


def _rgba_at(ax: plt.Axes, row: int, col: int) -> np.ndarray:
    """The rendered colour (RGBA, Agg canvas) at the centre of cell (row, col) of the axes' image."""
    fig = ax.figure
    fig.canvas.draw()
    pixels = np.asarray(fig.canvas.buffer_rgba())
    x, y = ax.transData.transform((col, row))
    return pixels[int(round(pixels.shape[0] - y)), int(round(x))]


def test_a_masked_cell_is_drawn_in_another_colour_than_a_zero_weight_cell():
    weights = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.5, 0.0, 0.5]])  # (2, 1) is a zero weight
    allowed = masks.materialize(masks.causal(), 3)  # (0, 1) is masked
    ax = plot_attention(weights, mask=allowed)
    masked, zero = _rgba_at(ax, 0, 1), _rgba_at(ax, 2, 1)
    assert np.abs(masked[:3].astype(int) - zero[:3].astype(int)).sum() > 60
    assert ax.get_images()[0].get_array().mask.tolist() == (~allowed).tolist()
    assert ax.get_xlabel() == "key" and ax.get_ylabel() == "query"
    assert len(ax.figure.axes) == 2  # the map and its colorbar
    plt.close("all")


def test_plot_mask_draws_masked_pairs_outside_its_colormap():
    ax = plot_mask(masks.causal(), n=4)
    attend, masked = _rgba_at(ax, 1, 0), _rgba_at(ax, 0, 1)
    assert tuple(masked[:3]) == tuple(int(round(255 * c)) for c in matplotlib.colors.to_rgb(viz.MASKED_COLOUR))
    assert np.abs(masked[:3].astype(int) - attend[:3].astype(int)).sum() > 60
    plt.close("all")


def test_tick_labels_are_thinned_past_forty_tokens():
    assert viz.tick_positions(10) == list(range(10))
    assert len(viz.tick_positions(500)) <= viz.MAX_TICK_LABELS
    ax = plot_attention(torch.full((200, 200), 1 / 200), tokens=list(range(200)))
    assert len(ax.get_xticklabels()) <= viz.MAX_TICK_LABELS
    with pytest.raises(ValueError, match="max_labels"):
        viz.tick_positions(5, max_labels=0)
    plt.close("all")


def test_explorer_picture_keeps_newlines_and_says_when_it_cuts_the_text(small_model):
    pic = explorer.explorer_picture(small_model, "a\nb", 1, 2, masks.causal())
    assert pic.tokens[1:] == [97, 10, 98] and pic.weights.shape == (4, 4) and pic.mask.shape == (4, 4)
    assert pic.message == "3 bytes (limit 128 bytes)"  # 4 x max_seq_len = 4 x 32
    long = explorer.explorer_picture(small_model, "x" * 200, 0, 0, masks.causal())
    assert long.message == "showing the first 128 of 200 bytes (limit 128 bytes)"
    assert long.weights.shape == (129, 129)


def test_explorer_picture_of_an_empty_text_is_a_message_not_a_square(small_model):
    pic = explorer.explorer_picture(small_model, "", 0, 0, masks.causal())
    assert pic.weights is None and "empty" in pic.message
    ax = explorer.draw_explorer_picture(pic, plt.subplots()[1], "t")
    assert not ax.get_images() and "empty" in ax.texts[0].get_text()
    plt.close("all")


def test_explorer_picture_follows_layer_head_and_mask(small_model):
    causal = explorer.explorer_picture(small_model, "hello, world", 0, 0, masks.causal())
    window = explorer.explorer_picture(small_model, "hello, world", 0, 0, masks.sliding_window(2))
    other = explorer.explorer_picture(small_model, "hello, world", 1, 3, masks.causal())
    assert not torch.equal(causal.weights, window.weights) and not torch.equal(causal.weights, other.weights)
    assert torch.equal(window.weights > 0, window.mask)  # the weights are zero exactly where masked
    with pytest.raises(ValueError, match="layer must be in 0..1"):
        explorer.explorer_picture(small_model, "a", 2, 0, masks.causal())
    with pytest.raises(ValueError, match="head must be in 0..3"):
        explorer.explorer_picture(small_model, "a", 0, 4, masks.causal())
    with pytest.raises(TypeError, match="text must be a str"):
        explorer.explorer_picture(small_model, b"a", 0, 0, masks.causal())


def test_fixed_colour_scale_is_the_same_for_every_picture(small_model):
    scales = []
    for text in ("ab", "a much longer text"):
        pic = explorer.explorer_picture(small_model, text, 0, 0, masks.causal())
        ax = explorer.draw_explorer_picture(pic, plt.subplots()[1], "t", fixed_scale=True)
        scales.append(ax.get_images()[0].get_clim())
    assert scales == [(0.0, 1.0), (0.0, 1.0)]
    plt.close("all")


def test_token_tick_labels_do_not_run_into_each_other():
    """The explorer's picture at its size: "<bos>" beside one-byte labels must not touch the next label."""
    tokens = [256, *b"def greet(name):\n    return name"]  # 33 tokens: every one labelled
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    plot_attention(torch.full((len(tokens),) * 2, 1 / len(tokens)), tokens=tokens, ax=ax)
    fig.canvas.draw()
    boxes = [t.get_window_extent() for t in ax.get_xticklabels() if t.get_text()]
    assert len(boxes) == len(tokens)
    assert all(a.x1 <= b.x0 for a, b in zip(boxes, boxes[1:])), "x tick labels overlap"
    plt.close("all")


def test_the_saved_explorer_reads_as_a_sentence_without_a_kernel(small_model):
    bundle = attention_explorer(small_model, text="hello")._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle  # live: the widget itself
    assert bundle["text/plain"] == explorer.EXPLORER_PLAIN_TEXT and "VBox" not in bundle["text/plain"]
    plt.close("all")


def test_attention_explorer_redraws_when_a_control_changes(small_model, monkeypatch):
    drawn = []
    monkeypatch.setattr(
        explorer, "draw_explorer_picture", lambda pic, ax, title, log, fixed_scale: drawn.append((title, pic))
    )
    widget = attention_explorer(small_model, text="hello")
    text_box, info, (layer, head), (mask, _log, fixed) = (
        widget.children[0],
        widget.children[1],
        *(c.children for c in widget.children[2:4]),
    )
    assert layer.max == small_model.config.n_layers - 1 and head.max == small_model.config.n_heads - 1
    layer.value = 1
    mask.value = list(mask.options)[1]
    text_box.value = "hello,\nworld"
    assert [t for t, _ in drawn[:2]] == ["layer 0, head 0, causal", "layer 1, head 0, causal"]
    assert drawn[2][0].startswith("layer 1, head 0, window 16: 17 keys")
    assert drawn[-1][1].weights.shape == (13, 13)  # BOS + 12 bytes, the newline kept
    assert info.value == "12 bytes (limit 128 bytes)"
    fixed.value = True
    assert drawn[-1][0] == drawn[-2][0]  # the fixed scale redraws the same picture
    text_box.value = ""
    assert drawn[-1][1].weights is None and "empty" in info.value
    plt.close("all")


def test_checkers_pass_the_package_functions_and_fail_wrong_ones(capsys):
    from minillm.attention import reference_attention
    from minillm.rope import apply_rope

    assert ch01.check_attention(lambda q, k, v, m: reference_attention(q, k, v, m)[0])
    assert ch01.check_rope(apply_rope)
    assert not ch01.check_rope(lambda x, p, b: x)
    out = capsys.readouterr().out
    assert "✅ PASS attention" in out and "❌ FAIL rope" in out and "hint:" in out and "expected:" in out


def test_a_stub_is_reported_as_not_implemented_and_errors_do_not_escape(capsys):
    def stub(*args):
        raise NotImplementedError

    assert not ch00.check_bits_per_byte(stub)
    assert not ch00.check_bits_per_byte(lambda x: 1 / 0)
    assert not run_check("shape", lambda: torch.zeros(2), lambda: torch.zeros(3), [()])
    out = capsys.readouterr().out
    assert "⏳ TODO bits_per_byte: not implemented yet" in out
    assert "raised ZeroDivisionError" in out
    assert "shape (2,) instead of (3,)" in out


def test_check_env_reports_every_dependency_and_the_device(capsys):
    assert check_env() == 0
    out = capsys.readouterr().out
    for name in ("torch", "numpy", "safetensors", "device:", "triton:"):
        assert name in out
