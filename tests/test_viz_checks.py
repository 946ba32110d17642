import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from minillm import masks  # noqa: E402
from minillm.check_env import main as check_env  # noqa: E402
from minillm.checks import ch00, ch01, run_check  # noqa: E402
from minillm.viz import attention_explorer, attention_grid, plot_attention, plot_curves, plot_mask  # noqa: E402


def test_plot_mask_draws_exactly_the_materialized_mask():
    ax = plot_mask(masks.sink_window(2, 3), n=12)
    image = ax.get_images()[0].get_array()
    assert torch.equal(torch.tensor(image.data).bool(), masks.materialize(masks.sink_window(2, 3), 12))
    assert "attend" in ax.get_title()
    plt.close("all")


def test_attention_grid_has_one_panel_per_layer_and_head(small_model):
    attn = small_model(torch.randint(0, 256, (1, 10)), return_attn=True).attn
    fig = attention_grid(attn)
    assert len(fig.axes) == small_model.config.n_layers * small_model.config.n_heads
    ax = plot_attention(attn[0][0, 0], tokens=list(range(10)))
    assert len(ax.get_xticklabels()) == 10
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


def test_attention_explorer_redraws_when_a_control_changes(small_model, monkeypatch):
    import minillm.viz as viz

    titles = []
    monkeypatch.setattr(viz, "plot_attention", lambda w, tokens, ax, log, title: titles.append((title, w.shape)))
    widget = attention_explorer(small_model, text="hello")
    (layer, head), (mask, _) = widget.children[1].children, widget.children[2].children
    assert layer.max == small_model.config.n_layers - 1 and head.max == small_model.config.n_heads - 1
    layer.value = 1
    mask.value = list(mask.options)[1]
    widget.children[0].value = "hello, world"
    assert [t for t, _ in titles[:2]] == ["layer 0, head 0, causal", "layer 1, head 0, causal"]
    assert titles[2][0].startswith("layer 1, head 0, sliding window")
    assert titles[-1][1] == (13, 13)  # BOS + 12 bytes
    plt.close("all")


def test_checkers_pass_the_package_functions_and_fail_wrong_ones(capsys):
    from minillm.attention import reference_attention
    from minillm.rope import apply_rope

    assert ch01.check_attention(lambda q, k, v, m: reference_attention(q, k, v, m)[0])
    assert ch01.check_rope(apply_rope)
    assert not ch01.check_rope(lambda x, p, b: x)
    out = capsys.readouterr().out
    assert "✅ attention" in out and "❌ rope" in out and "hint:" in out and "expected:" in out


def test_a_stub_is_reported_as_not_implemented_and_errors_do_not_escape(capsys):
    def stub(*args):
        raise NotImplementedError

    assert not ch00.check_bits_per_byte(stub)
    assert not ch00.check_bits_per_byte(lambda x: 1 / 0)
    assert not run_check("shape", lambda: torch.zeros(2), lambda: torch.zeros(3), [()])
    out = capsys.readouterr().out
    assert "⏳ bits_per_byte: not implemented yet" in out
    assert "raised ZeroDivisionError" in out
    assert "shape (2,) instead of (3,)" in out


def test_check_env_reports_every_dependency_and_the_device(capsys):
    assert check_env() == 0
    out = capsys.readouterr().out
    for name in ("torch", "numpy", "safetensors", "device:", "triton:"):
        assert name in out
