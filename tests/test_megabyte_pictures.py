"""MEGABYTE's layout picture: read off a real Megabyte, equal to the paper's two shifts, and a
layout that forgets a shift fails against the model's forward."""

from __future__ import annotations

from dataclasses import replace

import matplotlib
import pytest
import torch

from minillm.megabyte import Megabyte, MegabyteConfig
from minillm.megabyte_pictures import GLOBAL_ROUTE, LOCAL_ROUTE, PatchLayout, check_layout, patch_layout, plot_layout

matplotlib.use("Agg")
P, K = 4, 3
T = P * K


def small_model(shift_global: bool = True, shift_local: bool = True) -> Megabyte:
    torch.manual_seed(0)
    model = Megabyte(MegabyteConfig(patch_size=P, max_patches=K)).eval()
    model.shift_global, model.shift_local = shift_global, shift_local
    return model


IDS = torch.randint(0, 256, (1, T), generator=torch.Generator().manual_seed(1))


def paper_layout() -> PatchLayout:
    """The paper's layout, written from its two shifts (not from the package): global input k holds
    patch k - 1 (a pad patch for k = 0), local slot t embeds byte t - 1 (a pad byte at a patch start)."""
    global_reads = ((),) + tuple(tuple(range((k - 1) * P, k * P)) for k in range(1, K))
    local_reads = tuple(() if t % P == 0 else (t - 1,) for t in range(T))
    return PatchLayout(P, global_reads, tuple(t // P for t in range(T)), local_reads)


def test_the_layout_read_off_the_model_is_the_papers() -> None:
    assert patch_layout(small_model(), IDS) == paper_layout()


def test_every_logit_sees_exactly_the_earlier_bytes_split_by_patch_border() -> None:
    routes = paper_layout().routes()
    for s in range(T):
        for t in range(T):
            want = 0 if t >= s else GLOBAL_ROUTE if t < s - s % P else LOCAL_ROUTE
            assert routes[s, t] == want, (s, t)


def test_the_papers_layout_agrees_with_the_forward() -> None:
    check_layout(paper_layout(), small_model(), IDS)


@pytest.mark.parametrize("wrong", ["no global shift", "no local shift", "slice of the next patch"])
def test_a_wrong_layout_fails_against_the_forward(wrong: str) -> None:
    right = paper_layout()
    if wrong == "no global shift":  # a patch sees itself
        layout = replace(right, global_reads=tuple(tuple(range(k * P, (k + 1) * P)) for k in range(K)))
    elif wrong == "no local shift":  # a byte sees itself
        layout = replace(right, local_reads=tuple((t,) for t in range(T)))
    else:
        layout = replace(right, slice_of=tuple(min(t // P + 1, K - 1) for t in range(T)))
    with pytest.raises(AssertionError, match="disagree"):
        check_layout(layout, small_model(), IDS)


@pytest.mark.parametrize("shifts", [(False, True), (True, False)])
def test_a_model_without_a_shift_draws_a_layout_that_sees_itself(shifts) -> None:
    model = small_model(*shifts)
    layout = patch_layout(model, IDS)
    check_layout(layout, model, IDS)  # the picture follows the model, bug included
    assert layout != paper_layout()
    assert any(layout.routes()[s, s] for s in range(T)), "a missing shift lets some logit see its own byte"
    with pytest.raises(AssertionError, match="disagree"):
        check_layout(paper_layout(), model, IDS)


def test_bad_ids_raise_naming_the_argument() -> None:
    with pytest.raises(ValueError, match="ids"):
        patch_layout(small_model(), IDS[:, :-1])
    with pytest.raises(TypeError, match="model"):
        patch_layout(object(), IDS)


def test_plot_layout_draws_two_panels() -> None:
    fig = plot_layout(paper_layout(), [str(i) for i in range(T)])
    assert len(fig.axes) == 2
    matplotlib.pyplot.close(fig)
