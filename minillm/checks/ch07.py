"""Checkers for chapter 07 (the ∞-former: basis, ridge fit, closed-form read, contraction, sticky bins)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..continuous_attention import GaussianBasis, bin_masses, gaussian_expectation, ridge_regression_matrix
from ..infinite_former import ContinuousMemory
from .core import CheckFailed, run_check

f64 = torch.float64


def _float64(name: str, fn: Callable) -> Callable:
    """Wrap a learner's function: its result must be a tensor; it is compared in float64."""

    def wrapped(*args):
        out = fn(*args)
        if not isinstance(out, torch.Tensor):
            raise CheckFailed(f"{name} must return a tensor, got {type(out).__name__}")
        return out.to(f64)

    return wrapped


def check_basis_matrix(basis_matrix: Callable) -> bool:
    """basis_matrix(t, num_basis, sigmas) -> psi(t) (len(t), num_basis), like GaussianBasis(num_basis, sigmas)(t)."""
    g = torch.Generator().manual_seed(0)
    cases = [
        (torch.linspace(0, 1, 7, dtype=f64), 8, (0.01, 0.05)),
        (torch.rand(5, generator=g, dtype=f64), 6, (0.1,)),
        (torch.tensor([-0.2, 0.0, 0.5, 1.3], dtype=f64), 12, (0.02, 0.05, 0.1)),
    ]
    return run_check(
        "basis_matrix",
        _float64("basis_matrix", basis_matrix),
        lambda t, n, sigmas: GaussianBasis(n, sigmas)(t),
        cases,
        hint="centres = linspace(0, 1, N // len(sigmas)); mu = centres.repeat_interleave(len(sigmas)), "
        "sigma = tensor(sigmas).repeat(N // len(sigmas)); psi = exp(-0.5 ((t[:, None] - mu) / sigma)^2) / "
        "(sigma sqrt(2 pi)): a normalised density, not a bump of height 1",
        describe=lambda c: f"{len(c[0])} positions, num_basis={c[1]}, sigmas={c[2]}",
    )


def check_ridge_fit(ridge_fit: Callable) -> bool:
    """ridge_fit(x, t, num_basis, sigmas, ridge) -> B (num_basis, e), the unpadded ridge fit."""
    g = torch.Generator().manual_seed(1)
    cases = []
    for L, e, N, sigmas, ridge, spread in [
        (10, 2, 8, (0.05, 0.1), 1.0, "cells"),
        (40, 3, 16, (0.01, 0.05), 0.5, "cells"),
        (25, 1, 12, (0.1,), 10.0, "random"),
    ]:
        cells = (torch.arange(L, dtype=f64) + 0.5) / L
        t = cells if spread == "cells" else torch.rand(L, generator=g, dtype=f64).sort().values
        cases.append((torch.randn(L, e, generator=g, dtype=f64), t, N, sigmas, ridge))
    return run_check(
        "ridge_fit",
        _float64("ridge_fit", ridge_fit),
        lambda x, t, n, sigmas, ridge: ridge_regression_matrix(GaussianBasis(n, sigmas), t, ridge, pad=False).T @ x,
        cases,
        hint="F = basis_matrix(t, N, sigmas).T is (N, L); B = solve(F @ F.T + ridge * eye(N), F @ x), in float64. "
        "No padding here, and ridge is added to the diagonal of F F^T, not squared or scaled",
        atol=1e-6,
        rtol=1e-6,
        describe=lambda c: f"x {tuple(c[0].shape)}, num_basis={c[2]}, sigmas={c[3]}, ridge={c[4]}",
    )


def check_expected_basis(expected_basis: Callable) -> bool:
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
        hint="the variances add: var = sigma_sq[..., None] + basis_sigma ** 2 (basis_sigma is a width, square it); "
        "r = exp(-(mu[..., None] - basis_mu)^2 / (2 var)) / sqrt(2 pi var)",
        describe=lambda c: f"mu {tuple(c[0].shape)}, N={len(c[2])}",
    )


def _reference_contract(coef, x_new, tau, num_samples, num_basis, sigmas, ridge):
    memory = ContinuousMemory(num_basis, sigmas, ridge, tau, num_samples=num_samples, pad=False)
    memory._coef = coef  # a memory holding exactly these coefficients
    return memory.update(x_new).coefficients


def check_contract(contract: Callable) -> bool:
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
        hint="s = (arange(M) + 0.5) / M; old = basis_matrix(s) @ coef; positions cat([tau * s, tau + (1 - tau) * "
        "(arange(L) + 0.5) / L]); ridge_fit(cat([old, x_new]), positions, ...). Read the old signal at s, "
        "but place it at tau * s",
        atol=1e-6,
        rtol=1e-6,
        describe=lambda c: f"N={c[4]}, L={len(c[1])}, tau={c[2]}, M={c[3]}",
    )


def check_bin_masses(masses_fn: Callable) -> bool:
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
        hint="edges = linspace(0, 1, D + 1); cdf = 0.5 (1 + erf((edges - mu[:, None]) / sqrt(2 sigma_sq[:, None]))); "
        "masses = (cdf[:, 1:] - cdf[:, :-1]).sum(0): mass outside [0, 1] is not counted",
        atol=1e-8,
        rtol=1e-6,
        describe=lambda c: f"{len(c[0])} densities, {c[2]} bins",
    )
