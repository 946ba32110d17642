"""Checkers for chapter 07 (the ∞-former: basis, ridge fit, closed-form read, contraction, sticky bins, the
layer's read of its long-term memory)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..continuous_attention import GaussianBasis, bin_masses, gaussian_expectation, ridge_regression_matrix
from ..infinite_former import ContinuousMemory
from .core import CheckFailed, CheckResult, compare, run_check, tensor_result

f64 = torch.float64


def _float64(name: str, fn: Callable) -> Callable:
    """Wrap a learner's function: its result must be a float64 tensor (the text asks for float64, and
    the ridge fit needs it: F F^T + ridge I is badly conditioned for narrow bumps)."""

    def wrapped(*args):
        out = tensor_result(fn(*args), name)
        if out.dtype != f64:
            raise CheckFailed(f"{name} returned {out.dtype}: compute and return float64")
        return out

    return wrapped


def check_basis_matrix(basis_matrix: Callable, hint: int | None = None) -> CheckResult:
    """basis_matrix(t, num_basis, sigmas) -> psi(t) (len(t), num_basis), like GaussianBasis(num_basis, sigmas)(t).

    The tolerance is float64's (1e-9 relative): a basis computed in float32 and cast at the end is
    off by ~1e-7, which the ridge fit then amplifies (see check_ridge_fit).
    """
    g = torch.Generator().manual_seed(0)
    cases = [
        (torch.linspace(0, 1, 7, dtype=f64), 8, (0.01, 0.05)),
        (torch.rand(5, generator=g, dtype=f64), 6, (0.1,)),
        (torch.tensor([-0.2, 0.0, 0.5, 1.3], dtype=f64), 12, (0.02, 0.05, 0.1)),
        ((torch.arange(64, dtype=f64) + 0.5) / 64, 128, (0.01, 0.05)),  # narrow bumps, 64 centres
    ]

    def student(t, n, sigmas):
        got, expected = _float64("basis_matrix", basis_matrix)(t, n, sigmas), GaussianBasis(n, sigmas)(t)
        if got.shape == expected.shape and compare(got, expected, atol=1e-12, rtol=1e-9):
            error = ((got - expected).abs().max() / expected.abs().max()).item()  # relative to the peak
            if error < 1e-5:
                raise CheckFailed(
                    f"the values are right to {error:.1g} of the peak only, float32's precision: compute in "
                    "float64 from the start (centres, widths and positions)"
                )
        return got

    return run_check(
        "basis_matrix",
        student,
        lambda t, n, sigmas: GaussianBasis(n, sigmas)(t),
        cases,
        hints=(
            "column n is basis function n evaluated at every t: a normalised Gaussian density (it integrates to "
            "1, so its peak is 1 / (sigma sqrt(2 pi)), not 1), computed in float64 from start to end",
            "there are num_basis // len(sigmas) centres spread evenly over [0, 1] ends included; the columns go "
            "centre by centre, and within one centre through every width in `sigmas` in order (so consecutive "
            "columns share a centre)",
        ),
        atol=1e-12,
        rtol=1e-9,
        describe=lambda c: f"{len(c[0])} positions, num_basis={c[1]}, sigmas={c[2]}",
        level=hint,
    )


def check_ridge_fit(ridge_fit: Callable, hint: int | None = None) -> CheckResult:
    """ridge_fit(x, t, num_basis, sigmas, ridge) -> B (num_basis, e), the unpadded ridge fit.

    The last case (N=512 narrow bumps, ridge 0.01, L=256) is ill-conditioned: a fit done in float32
    is ~30% off there, while float64 with solve (or even an explicit inverse) is within 1e-6. It is
    judged by the relative error of the whole matrix, which separates the two by five orders.
    """
    g = torch.Generator().manual_seed(1)
    cases = []
    for L, e, N, sigmas, ridge, spread in [
        (10, 2, 8, (0.05, 0.1), 1.0, "cells"),
        (40, 3, 16, (0.01, 0.05), 0.5, "cells"),
        (25, 1, 12, (0.1,), 10.0, "random"),
        (256, 2, 512, (0.01, 0.05), 0.01, "cells"),
    ]:
        cells = (torch.arange(L, dtype=f64) + 0.5) / L
        t = cells if spread == "cells" else torch.rand(L, generator=g, dtype=f64).sort().values
        cases.append((torch.randn(L, e, generator=g, dtype=f64), t, N, sigmas, ridge))

    def reference(x, t, n, sigmas, ridge):
        return ridge_regression_matrix(GaussianBasis(n, sigmas), t, ridge, pad=False).T @ x

    def student(x, t, n, sigmas, ridge):
        got, expected = _float64("ridge_fit", ridge_fit)(x, t, n, sigmas, ridge), reference(x, t, n, sigmas, ridge)
        if got.shape == expected.shape:
            error = ((got - expected).norm() / expected.norm()).item()
            if error > 1e-5:
                raise CheckFailed(f"the coefficients are {error:.3g} off (relative error of the whole matrix)")
            return expected
        return got

    return run_check(
        "ridge_fit",
        student,
        reference,
        cases,
        hints=(
            "B minimises the squared error of the fit plus ridge times the squared size of B: the ridge term "
            "goes on the diagonal of the N x N normal matrix, once, unscaled. At N = 512 the system is badly "
            "conditioned: every step (basis, products, solve) must stay in float64",
            "build F (N, L) from your basis at the positions t (no padding), form the N x N matrix F F^T plus "
            "ridge on its diagonal and the right-hand side F x (N, e), and solve that linear system (in float64) "
            "rather than inverting it",
        ),
        describe=lambda c: f"x {tuple(c[0].shape)}, num_basis={c[2]}, sigmas={c[3]}, ridge={c[4]}",
        level=hint,
    )


def check_expected_basis(expected_basis: Callable, hint: int | None = None) -> CheckResult:
    """expected_basis(mu, sigma_sq, basis_mu, basis_sigma) -> r (..., N) = N(mu; mu_n, sigma_sq + sigma_n^2)."""
    cases = []
    for seed, (shape, N, sigmas) in enumerate(
        [((3,), 8, (0.01, 0.05)), ((2, 4), 6, (0.02, 0.05, 0.1)), ((1,), 4, (0.3,))]
    ):
        g = torch.Generator().manual_seed(seed)
        mu = torch.rand(shape, generator=g, dtype=f64) * 1.2 - 0.1
        sigma_sq = (0.01 + 0.3 * torch.rand(shape, generator=g, dtype=f64)) ** 2
        basis = GaussianBasis(N, sigmas)
        cases.append((mu, sigma_sq, basis.mu, basis.sigma))
    return run_check(
        "expected_basis",
        _float64("expected_basis", expected_basis),
        lambda mu, sigma_sq, bm, bs: gaussian_expectation(mu, sigma_sq, GaussianBasis.from_tensors(bm, bs)),
        cases,
        hints=(
            "r_n is a Gaussian density in mu, centred on the basis centre, whose variance is the query's "
            "variance plus the basis function's: basis_sigma holds widths (standard deviations), not variances",
            "give mu and sigma_sq a trailing axis so they broadcast against the N basis entries, add the two "
            "variances, and evaluate the normalised density (1 / sqrt(2 pi var) in front) at mu",
        ),
        describe=lambda c: f"mu {tuple(c[0].shape)}, N={len(c[2])}",
        level=hint,
    )


def _reference_contract(coef, x_new, tau, num_samples, num_basis, sigmas, ridge):
    memory = ContinuousMemory(num_basis, sigmas, ridge, tau, num_samples=num_samples, pad=False)
    memory._coef = coef  # a memory holding exactly these coefficients
    return memory.update(x_new).coefficients


def check_contract(contract: Callable, hint: int | None = None) -> CheckResult:
    """contract(coef, x_new, tau, num_samples, num_basis, sigmas, ridge) -> B (N, e), as ContinuousMemory.update
    without padding."""
    cases = []
    for seed, (N, e, L, tau, M, sigmas, ridge) in enumerate(
        [
            (16, 2, 8, 0.75, 32, (0.02, 0.05), 1.0),
            (32, 3, 20, 0.5, 64, (0.01, 0.05), 0.5),
            (12, 1, 5, 0.9, 16, (0.1,), 2.0),
        ]
    ):
        g = torch.Generator().manual_seed(seed)
        x_old = torch.randn(3 * L, e, generator=g, dtype=f64)
        coef = ContinuousMemory(N, sigmas, ridge, tau, pad=False).fit(x_old).coefficients
        cases.append((coef, torch.randn(L, e, generator=g, dtype=f64), tau, M, N, sigmas, ridge))
    return run_check(
        "contract",
        _float64("contract", contract),
        _reference_contract,
        cases,
        hints=(
            "the old signal is *read* at the M cell centres of [0, 1] but *placed* at tau times those centres; "
            "the L new vectors sit at the L cell centres of (tau, 1]; one ridge fit of all M + L vectors follows",
            "three steps: the M centres (j + 1/2) / M and the old signal there (basis times coef); the positions "
            "(old ones squeezed into [0, tau], new ones on cell centres of the last 1 - tau); ridge_fit of the "
            "stacked M + L vectors at those positions",
        ),
        atol=1e-6,
        rtol=1e-6,
        describe=lambda c: f"N={c[4]}, L={len(c[1])}, tau={c[2]}, M={c[3]}",
        level=hint,
    )


def check_bin_masses(masses_fn: Callable, hint: int | None = None) -> CheckResult:
    """bin_masses(mu (Q,), sigma_sq (Q,), num_bins) -> (num_bins,): each density's mass per bin of [0, 1], summed."""
    cases = [
        (torch.tensor([0.5], dtype=f64), torch.tensor([0.1**2], dtype=f64), 10),
        (torch.tensor([0.3, 0.8], dtype=f64), torch.tensor([0.01, 0.0025], dtype=f64), 16),
        (torch.tensor([0.0, 1.0, 0.45], dtype=f64), torch.tensor([0.2, 0.05, 1e-4], dtype=f64), 128),
    ]
    return run_check(
        "bin_masses",
        _float64("bin_masses", masses_fn),
        bin_masses,
        cases,
        hints=(
            "each bin's mass is an integral of the density over the bin (a difference of two CDF values), not "
            "the density at the bin's centre; mass outside [0, 1] is lost, not renormalised; queries add up",
            "evaluate every query's Gaussian CDF at the D + 1 bin edges (note erf takes (x - mu) / (sigma "
            "sqrt 2), and sigma_sq is a variance), difference neighbouring edges, sum over the queries",
        ),
        atol=1e-8,
        rtol=1e-6,
        describe=lambda c: f"{len(c[0])} densities, {c[2]} bins",
        level=hint,
    )


# ----------------------------------------------------------------------------------------------
# Exercise 6: the layer's read of its long-term memory
# ----------------------------------------------------------------------------------------------


def _reference_long_term_read(q, coef, W_K, W_V, w_mu, w_sigma, basis_mu, basis_sigma, min_sigma_sq):
    """The package's LongTermAttention with these weights (and an identity output projection): (B, H, T, D)."""
    from ..config import ModelConfig
    from ..infinite_former import LongTermAttention, MemoryConfig

    B, H, T, D = q.shape
    N, C = coef.shape[-2], H * D
    sigmas = tuple(dict.fromkeys(basis_sigma.tolist()))
    layer = LongTermAttention(
        ModelConfig(vocab_size=4, d_model=C, n_layers=1, n_heads=H),
        MemoryConfig(num_basis=N, sigmas=sigmas, min_sigma_sq=min_sigma_sq),
    ).double()
    with torch.no_grad():
        layer.key.weight.copy_(W_K), layer.value.weight.copy_(W_V), layer.proj.weight.copy_(torch.eye(C, dtype=f64))
        layer.to_mu.weight.copy_(w_mu[None]), layer.to_sigma_sq.weight.copy_(w_sigma[None])
        torch.testing.assert_close(layer.basis_mu, basis_mu), torch.testing.assert_close(layer.basis_sigma, basis_sigma)
        out, _, _ = layer(q, coef)  # (B, T, C)
    return out.view(B, T, H, D).transpose(1, 2)


def check_long_term_read(long_term_read: Callable, hint: int | None = None) -> CheckResult:
    """long_term_read(q, coef, W_K, W_V, w_mu, w_sigma, basis_mu, basis_sigma, min_sigma_sq) -> (B, H, T, D),
    what the package's LongTermAttention computes before its output projection."""
    cases = []
    for seed, (B, H, T, D, N, sigmas, min_sigma_sq) in enumerate(
        [(1, 2, 3, 4, 8, (0.01, 0.05), 1e-4), (2, 4, 5, 4, 18, (0.02, 0.05, 0.1), 1e-4), (1, 2, 4, 8, 8, (0.05,), 0.3)]
    ):
        g = torch.Generator().manual_seed(70 + seed)
        C = H * D
        basis = GaussianBasis(N, sigmas)

        def draw(*shape, scale=1.0, g=g):
            return torch.randn(*shape, generator=g, dtype=f64) * scale

        cases.append(
            (draw(B, H, T, D), draw(B, N, C), draw(C, C, scale=C**-0.5), draw(C, C, scale=C**-0.5), draw(N),
             draw(N, scale=1.0 + 3 * seed), basis.mu, basis.sigma, min_sigma_sq)
        )  # fmt: skip
    return run_check(
        "long_term_read",
        _float64("long_term_read", long_term_read),
        _reference_long_term_read,
        cases,
        hints=(
            "each of the N memory rows gives one key and one value per head, split into heads the way the queries "
            "are (channel h * D + d is head h's dimension d); a query's N scores are scaled as in dot-product "
            "attention; the density's centre must lie in (0, 1) and its variance must be positive and never below "
            "min_sigma_sq; the read is the expected value of the values under the density",
            "keys and values: the memory times the transposed matrices, viewed as (batch, N, heads, D) and with the "
            "N and heads axes swapped; the centre is the logistic sigmoid of the scores dotted with w_mu, the "
            "variance the softplus of the scores dotted with w_sigma, floored; r is exercise 3's closed form (the "
            "basis widths squared); the output is r times the values",
        ),
        describe=lambda c: f"q {tuple(c[0].shape)}, N = {c[1].shape[-2]}, min_sigma_sq = {c[-1]:g}",
        level=hint,
    )


# ----------------------------------------------------------------------------------------------
# Exercise 9: an update stated by what it must keep, not by its formula
# ----------------------------------------------------------------------------------------------

KEPT_TOLERANCE = 0.05  # relative error a right update stays far below (~0.03 at most); wrong ones exceed 0.16


def _relative_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    return ((got - expected).norm() / expected.norm()).item()


def check_append(append: Callable, hint: int | None = None) -> CheckResult:
    """append(coef (N, e), x_new (L, e), tau, basis) -> (N, e): a memory that keeps its old content, squeezed
    into [0, tau], and the new vectors in (tau, 1]. Checked by reading it, not by comparing coefficients."""
    s = torch.linspace(0.1, 0.9, 161, dtype=f64)  # inside the old content, away from the ends' blur

    def student(coef, x_new, tau, basis):
        out = _float64("append", append)(coef, x_new, tau, basis)
        if out.shape != coef.shape:
            raise CheckFailed(f"the memory is {tuple(coef.shape)} and must stay so; got {tuple(out.shape)}")
        old_error = _relative_error(basis(tau * s) @ out, basis(s) @ coef)
        if old_error > KEPT_TOLERANCE:
            raise CheckFailed(
                f"the old content, read at tau * s, is off from the old memory read at s by {old_error:.2f} "
                f"(relative; at most {KEPT_TOLERANCE} expected)"
            )
        at = tau + (1 - tau) * (torch.arange(len(x_new), dtype=f64) + 0.5) / len(x_new)  # the new vectors' cells
        inside = (at > tau + 0.05) & (at < 0.95)
        new_error = _relative_error(basis(at[inside]) @ out, x_new[inside])
        if new_error > KEPT_TOLERANCE:
            raise CheckFailed(
                f"read at the cell centres of (tau, 1], the memory is off from the new vectors by {new_error:.2f} "
                f"(relative; at most {KEPT_TOLERANCE} expected)"
            )
        return "kept"

    cases = []
    for tau, L in ((0.75, 64), (0.5, 64), (0.6, 96)):
        t, i = (torch.arange(256, dtype=f64) + 0.5) / 256, (torch.arange(L, dtype=f64) + 0.5) / L
        old = torch.stack([1.5 + torch.sin(2 * torch.pi * t), torch.cos(3 * t)], -1)  # (256, 2): a smooth past
        x_new = torch.stack([1 + 0.5 * torch.sin(2 * torch.pi * i), 0.5 + 0 * i], -1)  # (L, 2): smooth new vectors
        memory = ContinuousMemory(64, (0.01, 0.05), 1.0, tau, pad=False).fit(old)
        cases.append((memory.coefficients, x_new, tau, memory.basis))
    return run_check(
        "append",
        student,
        lambda *case: "kept",
        cases,
        hints=(
            "two reads decide: the new memory at tau * s against the old one at s (so the old content must be "
            "re-read from the old coefficients and moved, not dropped or left where it was), and the new memory "
            "at the cells of (tau, 1] against the new vectors; its shape must not change",
            "sample the old signal densely (a few hundred points: too few lose its detail), place those values "
            "at tau times their positions and the new vectors on the cell centres of (tau, 1], and ridge-fit "
            "everything with `basis` (a ridge around 1 is fine)",
        ),
        describe=lambda c: f"tau = {c[2]}, L = {len(c[1])}",
        level=hint,
    )
