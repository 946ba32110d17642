"""Tests of the ∞-former's continuous memory, continuous attention, layer and sorting task."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from minillm.config import ModelConfig
from minillm.continuous_attention import (
    ContinuousSoftmax,
    GaussianBasis,
    bin_masses,
    continuous_softmax,
    gaussian_expectation,
    sample_sticky_positions,
)
from minillm.infinite_former import ContinuousMemory, InfiniteFormer, LongTermAttention, MemoryConfig
from minillm.sorting import count_oracle_accuracy, make_sorting_data

f64 = torch.float64


def centres(n: int) -> torch.Tensor:
    return (torch.arange(n, dtype=f64) + 0.5) / n


def psi_by_hand(t: torch.Tensor, num_basis: int, sigmas: tuple[float, ...]) -> torch.Tensor:
    """The reference's basis written out independently: (len(t), N), sigma-major within each centre."""
    mus = torch.linspace(0, 1, num_basis // len(sigmas), dtype=f64)
    cols = [torch.exp(-0.5 * ((t - m) / s) ** 2) / (s * math.sqrt(2 * math.pi)) for m in mus for s in sigmas]
    return torch.stack(cols, dim=-1)


def bumps(t: torch.Tensor) -> torch.Tensor:
    """A smooth 2-channel signal that vanishes at both ends of [0, 1]: (len(t), 2)."""
    return torch.stack(
        [
            torch.sin(math.pi * t) ** 2,
            torch.exp(-(((t - 0.3) / 0.1) ** 2)) - 0.5 * torch.exp(-(((t - 0.7) / 0.08) ** 2)),
        ],
        dim=-1,
    )


# ---------------------------------------------------------------- ridge regression


@pytest.mark.parametrize("pad", [False, True])
def test_ridge_fit_solves_the_normal_equations(pad):
    torch.manual_seed(0)
    L, e, N, sigmas, ridge = 40, 3, 16, (0.01, 0.05), 0.7
    x = torch.randn(L, e, dtype=f64)
    memory = ContinuousMemory(N, sigmas, ridge, tau=0.5, pad=pad).fit(x)
    t, targets = centres(L), x
    if pad:  # the reference's padding: L // 2 zero vectors on each side, spacing 1 / L
        outside = (torch.arange(L // 2, dtype=f64) + 0.5) / L
        t = torch.cat([-outside.flip(0), t, 1 + outside])
        zeros = torch.zeros(L // 2, e, dtype=f64)
        targets = torch.cat([zeros, x, zeros])
    F = psi_by_hand(t, N, sigmas).T  # (N, L')
    expected = torch.linalg.solve(F @ F.T + ridge * torch.eye(N, dtype=f64), F @ targets)  # (N, e)
    torch.testing.assert_close(memory.coefficients, expected, rtol=1e-9, atol=1e-9)


def test_ridge_fit_interpolates_when_n_exceeds_l_and_lambda_vanishes():
    torch.manual_seed(1)
    x = torch.randn(12, 2, dtype=f64)
    memory = ContinuousMemory(64, (0.02, 0.05), ridge=1e-10, tau=0.5, pad=False).fit(x)
    torch.testing.assert_close(memory.read(centres(12)), x, rtol=0, atol=1e-5)


def test_smooth_signal_is_reconstructed_within_a_few_percent_with_64_basis_functions():
    t = centres(256)
    x = torch.stack(
        [torch.sin(2 * math.pi * t) + 0.5, torch.cos(3 * math.pi * t), torch.exp(-(((t - 0.4) / 0.15) ** 2))], -1
    )
    plain = ContinuousMemory(64, (0.01, 0.05), ridge=1.0, tau=0.5, pad=False).fit(x).read(t)
    assert (plain - x).norm() / x.norm() < 0.01  # measured 0.3%
    # Padding pulls the signal to 0 just outside [0, 1]: exact inside, a dip at edges where x != 0.
    padded = ContinuousMemory(64, (0.01, 0.05), ridge=1.0, tau=0.5, pad=True).fit(x)
    inside = (t > 0.1) & (t < 0.9)
    assert (padded.read(t) - x)[inside].norm() / x[inside].norm() < 0.02  # measured 0.7%
    outside = torch.tensor([-0.05, 1.05], dtype=f64)
    unpadded = ContinuousMemory(64, pad=False).fit(x)
    beyond_padded, beyond_unpadded = (m.read(outside, extrapolate=True).abs().max() for m in (padded, unpadded))
    assert beyond_padded < 0.1 < beyond_unpadded


def _stacked_least_squares(t: torch.Tensor, x: torch.Tensor, num_basis: int, sigmas, ridge: float) -> torch.Tensor:
    """argmin_B ||psi(t) B - x||^2 + ridge ||B||^2 as the plain least squares of the stacked system
    [psi(t); sqrt(ridge) I] B = [x; 0]: no normal equations, no inverse."""
    A = torch.cat([psi_by_hand(t, num_basis, sigmas), math.sqrt(ridge) * torch.eye(num_basis, dtype=f64)])
    b = torch.cat([x, torch.zeros(num_basis, x.shape[1], dtype=f64)])
    return torch.linalg.lstsq(A, b, driver="gelsd").solution


@pytest.mark.parametrize("L", [40, 41])
def test_both_fits_equal_an_independent_least_squares(L):
    """The paper's fit on the L vectors; the padded fit on them plus L // 2 zero vectors a side."""
    torch.manual_seed(L)
    N, sigmas, ridge = 16, (0.02, 0.05), 0.3
    x = torch.randn(L, 3, dtype=f64)
    paper = ContinuousMemory(N, sigmas, ridge, tau=0.5, pad=False).fit(x).coefficients
    torch.testing.assert_close(paper, _stacked_least_squares(centres(L), x, N, sigmas, ridge), rtol=1e-8, atol=1e-8)
    k = L // 2
    side = (torch.arange(1, k + 1, dtype=f64) - 0.5) / L
    t = torch.cat([-side.flip(0), centres(L), 1 + side])
    zeros = torch.zeros(k, 3, dtype=f64)
    padded = ContinuousMemory(N, sigmas, ridge, tau=0.5, pad=True).fit(x).coefficients
    expected = _stacked_least_squares(t, torch.cat([zeros, x, zeros]), N, sigmas, ridge)
    torch.testing.assert_close(padded, expected, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("L", [64, 65])
def test_padded_fit_is_the_reference_codes_compute_g(L):
    """deep-spin/infinite-former `compute_G`: G = F^T (F F^T + ridge I)^-1 on linspace(-0.5 + s,
    1.5 - s, 2L) (2L - 1 points, s = 1/L, for odd L), then the padding rows sliced off."""
    N, sigmas, ridge = 32, (0.01, 0.05), 1.0
    if L % 2:
        positions, cut = torch.linspace(-0.5 + 1 / L, 1.5 - 1 / L, 2 * L - 1, dtype=f64), (L - 1) // 2
    else:
        positions, cut = torch.linspace(-0.5 + 1 / (2 * L), 1.5 - 1 / (2 * L), 2 * L, dtype=f64), L // 2
    F = psi_by_hand(positions, N, sigmas).T  # (N, 2L)
    G = F.T @ torch.linalg.inv(F @ F.T + ridge * torch.eye(N, dtype=f64))
    G = G[cut:-cut]  # (L, N)
    x = torch.randn(L, 2, dtype=f64, generator=torch.Generator().manual_seed(L))
    got = ContinuousMemory(N, sigmas, ridge, tau=0.5, pad=True).fit(x).coefficients
    torch.testing.assert_close(got, G.T @ x, rtol=1e-8, atol=1e-8)


def test_padding_costs_accuracy_near_the_ends_and_the_paper_fit_does_not():
    """The numbers of ridge_regression_matrix's docstring: a signal equal to 1 at both ends."""
    t = centres(256)
    x = (1 + 0.5 * torch.sin(2 * math.pi * t))[:, None]
    to_end = torch.minimum(t, 1 - t)
    fits = {pad: ContinuousMemory(64, (0.01, 0.05), 1.0, pad=pad).fit(x) for pad in (False, True)}
    err = {pad: (memory.read(t) - x).abs()[:, 0] for pad, memory in fits.items()}
    assert err[False].max() < 0.02  # the paper's fit: good to 2% everywhere (measured 0.016)
    assert err[True][to_end < 0.02].max() > 0.4  # padding: a dip of ~0.46 at the ends
    assert err[True][(to_end > 0.1) & (to_end < 0.15)].max() > 0.02  # still ~3% at 0.1-0.15 from an end
    assert err[True][to_end > 0.15].max() < 0.02


def test_memory_config_selects_the_fit():
    assert MemoryConfig().new_ltm().pad and not MemoryConfig(pad=False).new_ltm().pad
    with pytest.raises(TypeError, match="pad must be a bool"):
        MemoryConfig(pad=1)
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=8, d_model=16, n_layers=1, n_heads=2, max_seq_len=8)
    model = InfiniteFormer(config, MemoryConfig(mem_len=4, num_basis=8, num_samples=16)).double()
    ids = torch.randint(0, 8, (1, 8))
    out = {}
    for pad in (True, False):
        model.memory = MemoryConfig(mem_len=4, num_basis=8, num_samples=16, pad=pad)
        memories = model.new_memories()
        model(ids, memories)
        out[pad] = model(ids, memories)  # reads an LTM fitted with this `pad`
    assert not torch.allclose(out[True], out[False])


# ---------------------------------------------------------------- memory size and updates


def test_memory_size_is_fixed_however_much_was_read():
    torch.manual_seed(2)
    memory = ContinuousMemory(32, (0.01, 0.05), 1.0, 0.75, num_samples=64).fit(torch.randn(10, 5))
    for L in (1, 7, 100, 1000):
        memory.update(torch.randn(L, 5))
        assert memory.coefficients.shape == (32, 5)
    batched = ContinuousMemory(32, num_samples=64).fit(torch.randn(3, 50, 5))
    batched.update(torch.randn(3, 500, 5), sticky_density=torch.rand(3, 16), generator=torch.Generator().manual_seed(0))
    assert batched.coefficients.shape == (3, 32, 5)


def test_update_squeezes_the_old_signal_into_tau_and_appends_the_new_vectors():
    tau = 0.75
    memory = ContinuousMemory(64, (0.01, 0.05), 1.0, tau).fit(bumps(centres(256)))
    s = torch.linspace(0, 1, 201, dtype=f64)
    old = memory.read(s)
    u = centres(64)
    x_new = torch.sin(math.pi * u)[:, None] ** 2 * torch.tensor([1.0, -1.0], dtype=f64)  # (64, 2)
    memory.update(x_new)
    # One fit of such signals is good to ~0.1% (features >= 0.08 wide, basis 0.01 and 0.05); after the
    # squeeze the features are >= 0.06 wide, still resolved, so the re-fit adds a similar error:
    # measured 0.4% for the old part and 1.2% for the 64 new vectors packed into 0.25 of the line.
    # Without the contraction (X_new(s) vs X_old(s)) the error is ~100%.
    assert (memory.read(tau * s) - old).norm() / old.norm() < 0.03
    assert (memory.read(tau + (1 - tau) * u) - x_new).norm() / x_new.norm() < 0.05


def test_precision_decays_with_the_number_of_updates():
    memory = ContinuousMemory(64, (0.01, 0.05), 1.0, 0.75).fit(bumps(centres(256)))
    s = torch.linspace(0, 1, 201, dtype=f64)
    old = memory.read(s)
    errors = []
    for n in range(1, 7):
        memory.update(torch.zeros(64, 2, dtype=f64))
        errors.append(((memory.read(0.75**n * s) - old).norm() / old.norm()).item())
    assert errors[0] < 0.03 and errors[-1] > 5 * errors[0]  # the length/precision trade-off


# ---------------------------------------------------------------- sticky memories


def test_sticky_samples_follow_the_density():
    gen = torch.Generator().manual_seed(0)
    M, bins = 40_000, 128
    uniform = sample_sticky_positions(torch.ones(bins, dtype=f64), M, gen)
    counts = torch.histc(uniform, bins=8, min=0, max=1)
    sd = math.sqrt(M / 8 * 7 / 8)  # binomial standard deviation per coarse bin
    assert (counts - M / 8).abs().max() < 5 * sd
    assert uniform.diff().min() >= 0  # sorted
    peaked = torch.zeros(bins, dtype=f64)
    peaked[40:48] = 1.0
    t = sample_sticky_positions(peaked, M, gen)
    assert t.min() >= 40 / bins and t.max() < 48 / bins
    # Within a bin the samples are jittered; jitter=False is the reference's left edge.
    assert len(t.unique()) > 0.9 * M
    left = sample_sticky_positions(peaked, M, gen, jitter=False)
    assert set((left * bins).round().long().tolist()) <= set(range(40, 48))
    torch.testing.assert_close(left * bins, (left * bins).round())


def test_bin_masses_of_a_density_are_its_integrals_over_the_bins():
    mu, sigma_sq = torch.tensor([0.3, 0.8], dtype=f64), torch.tensor([0.01, 0.0025], dtype=f64)
    masses = bin_masses(mu, sigma_sq, 10)  # (10,): summed over the two densities
    expected = []
    for j in range(10):
        t = torch.linspace(j / 10, (j + 1) / 10, 2001, dtype=f64)
        density = torch.exp(-0.5 * (t[:, None] - mu) ** 2 / sigma_sq) / torch.sqrt(2 * math.pi * sigma_sq)
        expected.append(torch.trapezoid(density.sum(-1), t))
    torch.testing.assert_close(masses, torch.stack(expected), rtol=1e-6, atol=1e-9)


def test_sticky_update_places_the_sampled_old_values_in_order():
    memory = ContinuousMemory(64, (0.01, 0.05), 1.0, 0.75, num_samples=512).fit(bumps(centres(256)))
    before = copy.deepcopy(memory)
    density = bin_masses(torch.tensor([0.3], dtype=f64), torch.tensor([0.05**2], dtype=f64))
    memory.update(torch.zeros(64, 2, dtype=f64), density, torch.Generator().manual_seed(0))
    t = memory.sampled_positions  # (512,): concentrated around 0.3
    assert ((t > 0.15) & (t < 0.45)).float().mean() > 0.95
    placed = 0.75 * centres(512)
    old = before.read(t)
    err = (memory.read(placed) - old)[20:-20]  # edges of the old part meet padding and new vectors
    assert err.norm() / old[20:-20].norm() < 0.05  # measured 1.2%
    again = copy.deepcopy(before).update(torch.zeros(64, 2, dtype=f64), density, torch.Generator().manual_seed(0))
    torch.testing.assert_close(again.coefficients, memory.coefficients)  # seeded


# ---------------------------------------------------------------- continuous attention


def test_closed_form_read_equals_numerical_quadrature():
    basis = GaussianBasis(8, (0.01, 0.05))
    mu = torch.tensor([0.0, 0.3, 0.77, 1.0], dtype=f64)
    sigma_sq = torch.tensor([1e-4, 0.01, 0.3, 2.0], dtype=f64)
    t = torch.linspace(-8, 9, 400_001, dtype=f64)  # the integral is over the whole line
    density = torch.exp(-0.5 * (t[:, None] - mu) ** 2 / sigma_sq) / torch.sqrt(2 * math.pi * sigma_sq)  # (T, 4)
    quadrature = torch.trapezoid(density[:, :, None] * basis(t)[:, None, :], t, dim=0)  # (4, N)
    torch.testing.assert_close(gaussian_expectation(mu, sigma_sq, basis), quadrature, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(continuous_softmax(mu, sigma_sq, basis), quadrature, rtol=1e-6, atol=1e-6)


def test_exponential_family_backward_passes_gradcheck():
    basis = GaussianBasis(8, (0.01, 0.05))
    mu, sigma_sq = torch.tensor([0.2, 0.5, 0.9], dtype=f64), torch.tensor([0.001, 0.02, 0.5], dtype=f64)
    theta = torch.stack([mu / sigma_sq, -0.5 / sigma_sq], -1).requires_grad_()
    assert torch.autograd.gradcheck(lambda th: ContinuousSoftmax.apply(th, basis.mu, basis.sigma), (theta,))
    # through (mu, sigma^2) it equals autograd of the explicit formula
    args = (mu.clone().requires_grad_(), sigma_sq.clone().requires_grad_())
    weights = torch.randn(3, 8, dtype=f64)
    g1 = torch.autograd.grad((continuous_softmax(*args, basis) * weights).sum(), args)
    g2 = torch.autograd.grad((gaussian_expectation(*args, basis) * weights).sum(), args)
    for a, b in zip(g1, g2, strict=True):
        torch.testing.assert_close(a, b)


def test_narrow_density_reads_the_signal_at_its_mean():
    memory = ContinuousMemory(64).fit(bumps(centres(256)))
    mu = torch.tensor([0.25, 0.5, 0.8], dtype=f64)
    r = gaussian_expectation(mu, torch.full_like(mu, 1e-12), memory.basis)  # (3, N)
    torch.testing.assert_close(r @ memory.coefficients, memory.read(mu))


def test_long_term_attention_gradients_pass_gradcheck():
    torch.manual_seed(3)
    config = ModelConfig(vocab_size=5, d_model=8, n_layers=1, n_heads=2, max_seq_len=4)
    layer = LongTermAttention(config, MemoryConfig(num_basis=8)).double()
    q = torch.randn(1, 2, 3, 4, dtype=f64, requires_grad=True)  # (B, H, T, D)
    coef = torch.randn(1, 8, 8, dtype=f64, requires_grad=True)  # (B, N, C)
    assert torch.autograd.gradcheck(lambda q, c: layer(q, c)[0], (q, coef))


# ---------------------------------------------------------------- the model


def test_stm_only_segments_equal_one_full_forward():
    torch.manual_seed(4)
    config = ModelConfig(vocab_size=11, d_model=16, n_layers=2, n_heads=2, max_seq_len=8)
    model = InfiniteFormer(config, MemoryConfig(mem_len=64, use_ltm=False)).eval()
    ids = torch.randint(0, 11, (2, 24))
    full = model(ids, model.new_memories())
    memories = model.new_memories()
    pieces = [model(ids[:, i : i + 8], memories) for i in range(0, 24, 8)]
    torch.testing.assert_close(torch.cat(pieces, 1), full, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("sticky", [False, True])
def test_ltm_model_keeps_fixed_size_memories_and_is_seeded(sticky):
    torch.manual_seed(5)
    config = ModelConfig(vocab_size=11, d_model=16, n_layers=2, n_heads=2, max_seq_len=8)
    model = InfiniteFormer(config, MemoryConfig(mem_len=8, num_basis=16, num_samples=32, sticky=sticky)).eval()
    ids = torch.randint(0, 11, (3, 48))
    outs = []
    for _ in range(2):
        memories = model.new_memories(torch.Generator().manual_seed(0))
        outs.append(torch.cat([model(ids[:, i : i + 8], memories) for i in range(0, 48, 8)], 1))
        for m in memories:
            assert m.stm.shape == (3, 8, 16) and m.ltm.coefficients.shape == (3, 16, 16)
    torch.testing.assert_close(outs[0], outs[1])
    # the LTM matters: forgetting it changes the last segment's logits
    memories = model.new_memories(torch.Generator().manual_seed(0))
    for i in range(0, 40, 8):
        model(ids[:, i : i + 8], memories)
    for m in memories:
        m.ltm = MemoryConfig(num_basis=16).new_ltm()
    assert not torch.allclose(model(ids[:, 40:], memories), outs[0][:, 40:])


def test_reading_without_logits_leaves_the_same_memories():
    torch.manual_seed(6)
    config = ModelConfig(vocab_size=11, d_model=16, n_layers=2, n_heads=2, max_seq_len=8)
    model = InfiniteFormer(config, MemoryConfig(mem_len=8, num_basis=16, num_samples=32, sticky=True)).eval()
    ids = torch.randint(0, 11, (2, 40))
    full, lean = (
        model.new_memories(torch.Generator().manual_seed(1)),
        model.new_memories(torch.Generator().manual_seed(1)),
    )
    for i in range(0, 32, 8):
        model(ids[:, i : i + 8], full)
        assert model(ids[:, i : i + 8], lean, return_logits=False) is None
    for a, b in zip(full, lean, strict=True):
        torch.testing.assert_close(a.ltm.coefficients, b.ltm.coefficients)
        torch.testing.assert_close(a.stm, b.stm)
    torch.testing.assert_close(model(ids[:, 32:], full), model(ids[:, 32:], lean))


# ---------------------------------------------------------------- the sorting task


def test_sorting_targets_rank_symbols_by_count_and_are_seeded():
    streams, targets = make_sorting_data(20, 300, vocab=6, seed=7)
    assert streams.shape == (20, 300) and targets.shape == (20, 6)
    again = make_sorting_data(20, 300, vocab=6, seed=7)
    assert torch.equal(streams, again[0]) and torch.equal(targets, again[1])
    for stream, target in zip(streams, targets, strict=True):
        counts = torch.bincount(stream, minlength=6)
        ranked = sorted(range(6), key=lambda s: (-counts[s].item(), s))
        assert target.tolist() == ranked
    assert count_oracle_accuracy(streams, targets) == 1.0
    assert count_oracle_accuracy(streams, targets, window=30) < 0.9


def test_sorting_streams_drift_from_initial_to_final_distribution():
    streams, _ = make_sorting_data(200, 400, vocab=5, seed=8)
    first, last = (
        torch.nn.functional.one_hot(part, 5).double().mean(1) for part in (streams[:, :80], streams[:, -80:])
    )
    middle = torch.nn.functional.one_hot(streams[:, 160:240], 5).double().mean(1)
    # the middle is the average of the two ends (r = 1/2), while the two ends are nearly unrelated
    assert (middle - (first + last) / 2).abs().mean() < 0.5 * (first - last).abs().mean()


# ---------------------------------------------------------------- bad arguments


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        ({"num_basis": 0}, ValueError, "num_basis must be an int >= 1"),
        ({"num_basis": -4}, ValueError, "num_basis"),
        ({"num_basis": 8.0}, TypeError, "num_basis must be an int"),
        ({"num_basis": 7}, ValueError, "multiple of len(sigmas)"),
        ({"sigmas": ()}, ValueError, "sigmas"),
        ({"sigmas": (0.01, -0.05)}, ValueError, "sigmas"),
        ({"ridge": -0.1}, ValueError, "ridge must be a number >= 0"),
        ({"tau": 0.0}, ValueError, "tau must lie strictly between 0 and 1"),
        ({"tau": 1.0}, ValueError, "tau"),
        ({"tau": 1.5}, ValueError, "tau"),
        ({"num_samples": 0}, ValueError, "num_samples"),
    ],
)
def test_bad_memory_arguments_raise(kwargs, error, words):
    with pytest.raises(error, match=words.replace("(", r"\(").replace(")", r"\)")):
        ContinuousMemory(**kwargs)


def test_bad_shapes_raise():
    memory = ContinuousMemory(16)
    with pytest.raises(RuntimeError, match="empty"):
        _ = memory.coefficients
    with pytest.raises(ValueError, match="x must have shape"):
        memory.fit(torch.randn(10))
    with pytest.raises(ValueError, match="x must have shape"):
        memory.fit(torch.randn(0, 4))
    with pytest.raises(TypeError, match="floating-point"):
        memory.fit(torch.ones(10, 4, dtype=torch.long))
    memory.fit(torch.randn(10, 4))
    with pytest.raises(ValueError, match="x_new has batch/width"):
        memory.update(torch.randn(10, 3))
    with pytest.raises(ValueError, match="t must be a 1-D"):
        memory.read(torch.rand(2, 3))
    with pytest.raises(ValueError, match="sticky_density must have shape"):
        memory.update(torch.randn(5, 4), sticky_density=torch.rand(2, 8))
    with pytest.raises(ValueError, match="mem_len"):
        MemoryConfig(mem_len=-1)
    with pytest.raises(ValueError, match="tau"):
        MemoryConfig(tau=2.0)
    with pytest.raises(ValueError, match="length"):
        make_sorting_data(4, 0)


def test_a_read_outside_the_memory_is_refused_unless_asked_for():
    """The memory holds its signal on [0, 1]: a read outside is the basis's tails, never silent."""
    memory = ContinuousMemory(num_basis=8, sigmas=(0.1,)).fit(torch.randn(6, 2, dtype=torch.float64))
    inside = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    assert memory.read(inside).shape == (3, 2)
    for outside in ([1.05], [-0.01], [0.5, 1.2]):
        with pytest.raises(ValueError, match=r"t must lie in \[0, 1\].*extrapolate=True"):
            memory.read(torch.tensor(outside, dtype=torch.float64))
    wide = torch.tensor([-0.2, 0.5, 1.2], dtype=torch.float64)
    psi = memory.basis.to("cpu", torch.float64)(wide)  # what a read is: B^T psi(t), tails included
    torch.testing.assert_close(memory.read(wide, extrapolate=True), psi @ memory.coefficients)
    with pytest.raises(TypeError, match="extrapolate"):
        memory.read(inside, extrapolate="yes")
