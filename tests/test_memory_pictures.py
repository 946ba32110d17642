"""The contraction picture draws what `ContinuousMemory.update` really does; a wrong drawing fails its check."""

import dataclasses

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from minillm.continuous_attention import bin_masses, cell_centres  # noqa: E402
from minillm.infinite_former import ContinuousMemory  # noqa: E402
from minillm.memory_pictures import contraction, plot_contraction, refit_drawn  # noqa: E402

f64 = torch.float64
TAU, M, L = 0.75, 32, 16


@pytest.fixture
def memory():
    t = cell_centres(128)
    return ContinuousMemory(32, (0.01, 0.05), 1.0, TAU, num_samples=M).fit(torch.sin(6 * t)[:, None])


@pytest.fixture
def x_new():
    return torch.randn(L, 1, generator=torch.Generator().manual_seed(0), dtype=f64)


def _attention_at(where: float) -> torch.Tensor:
    return bin_masses(torch.tensor([where], dtype=f64), torch.tensor([0.05**2], dtype=f64), num_bins=64)


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.allclose(a, b, rtol=1e-9, atol=1e-9)


def test_the_drawn_points_refitted_are_the_package_update(memory, x_new):
    picture = contraction(memory, x_new)
    assert _same(refit_drawn(picture), picture.after.coefficients)
    assert _same(picture.after.coefficients, memory.update(x_new).coefficients)  # the copy did what update does


def test_a_plain_update_reads_the_cell_centres_and_squeezes_them_into_0_tau(memory, x_new):
    picture = contraction(memory, x_new)
    assert _same(picture.read_at, cell_centres(M))
    assert _same(picture.placed_at, TAU * picture.read_at)  # X_new(tau s) ~ X_old(s)
    assert picture.placed_at.max() < TAU < picture.new_at.min() and picture.new_at.max() < 1
    assert _same(picture.new_values, x_new)


def test_a_sticky_update_reads_where_attention_looked(memory, x_new):
    picture = contraction(memory, x_new, _attention_at(0.3), torch.Generator().manual_seed(0))
    assert _same(refit_drawn(picture), picture.after.coefficients)
    near = ((picture.read_at - 0.3).abs() < 0.1).float().mean()
    assert near > 0.9  # a uniform read puts a fifth of its points there
    assert _same(picture.placed_at, TAU * cell_centres(M))  # still placed evenly: the attended region is stretched


def test_the_memory_drawn_from_is_unchanged(memory, x_new):
    before = memory.coefficients.clone()
    contraction(memory, x_new, _attention_at(0.7), torch.Generator().manual_seed(1))
    assert torch.equal(memory.coefficients, before)


@pytest.mark.parametrize(
    "wrong",
    [
        "old values left where they were read",
        "new vectors at the start of the line",
        "old signal read at the cell centres of a sticky update",
        "old values of the new memory",
    ],
)
def test_a_wrong_drawing_does_not_refit_to_the_update(memory, x_new, wrong):
    sticky = wrong == "old signal read at the cell centres of a sticky update"
    picture = contraction(memory, x_new, _attention_at(0.3) if sticky else None, torch.Generator().manual_seed(0))
    if wrong == "old values left where they were read":
        bad = dataclasses.replace(picture, placed_at=picture.read_at)
    elif wrong == "new vectors at the start of the line":
        bad = dataclasses.replace(picture, placed_at=picture.placed_at + (1 - TAU), new_at=picture.new_at - TAU)
    elif sticky:
        bad = dataclasses.replace(picture, old_values=picture.before.read(cell_centres(M)))
    else:
        bad = dataclasses.replace(picture, old_values=picture.after.read(picture.read_at))
    assert not _same(refit_drawn(bad), picture.after.coefficients)


def test_plot_contraction_draws_both_panels(memory, x_new):
    top, bottom = plot_contraction(contraction(memory, x_new, _attention_at(0.3), torch.Generator().manual_seed(0)))
    assert len(bottom.lines) == 4 and len(top.patches) == 64  # samples, new vectors, refit, tau; one bar a bin
    plt.close("all")


def test_bad_arguments_are_named(memory, x_new):
    with pytest.raises(TypeError, match="memory"):
        contraction("memory", x_new)
    with pytest.raises(ValueError, match="memory"):
        contraction(ContinuousMemory(), x_new)
    with pytest.raises(ValueError, match="x_new"):
        contraction(memory, x_new[None, :, :].expand(2, L, 1))
