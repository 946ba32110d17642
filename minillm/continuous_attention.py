"""Continuous attention over a signal of Gaussian radial basis functions: the math of the ∞-former.

Martins, Marinho & Martins, "∞-former: Infinite Memory Transformer" (ACL 2022, arXiv 2109.00301),
building on Martins et al. 2020, "Sparse and Continuous Attention Mechanisms" (arXiv 2006.07214).
A sequence of L vectors becomes a function of t in [0, 1], X(t) = B^T psi(t), with psi(t) a vector
of N Gaussian bumps and B (N, e) found by ridge regression; a query then reads it through a
Gaussian density N(t; mu, sigma^2), and the read r = E[psi(t)] has a closed form.

This file holds the pieces that do not learn: the basis, the ridge fit, the closed-form read
(explicit, and as an autograd.Function whose backward is the exponential-family formula, as in the
reference), and the histogram and sampler of sticky memories. `infinite_former.py` builds on them.
Departures from the reference code: memory vectors sit at cell centres (i + 1/2)/L everywhere (the
reference mixes centres and right edges); the sticky sampler draws a uniform point inside each
sampled bin (the reference always takes the bin's left edge); everything follows the input's device.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .validate import check_elements, check_float, check_int

SQRT_2PI = math.sqrt(2 * math.pi)


class GaussianBasis:
    """N Gaussian RBFs psi_n(t) = N(t; mu_n, sigma_n^2): N / len(sigmas) centres in [0, 1] per width.

    As in the reference, the centres are linspace(0, 1, N / len(sigmas)) crossed with `sigmas`,
    so narrow bumps give detail and wide ones keep the fit smooth between memory vectors.
    """

    def __init__(self, num_basis: int, sigmas: Sequence[float], device=None, dtype=torch.float64) -> None:
        check_int("num_basis", num_basis, 1)
        check_elements("num_basis", num_basis)
        if isinstance(sigmas, (str, bytes)) or not isinstance(sigmas, Sequence):
            raise TypeError(f"sigmas must be a sequence of widths such as (0.01, 0.05), got {type(sigmas).__name__}")
        sigmas = tuple(check_float("sigmas[i]", s) for s in sigmas)  # NaN or inf widths would pass min() <= 0
        if not sigmas or min(sigmas) <= 0:
            raise ValueError(f"sigmas must be a non-empty list of positive widths, got {sigmas}")
        if num_basis % len(sigmas):
            raise ValueError(f"num_basis ({num_basis}) must be a multiple of len(sigmas) ({len(sigmas)})")
        centres = torch.linspace(0, 1, num_basis // len(sigmas), dtype=torch.float64)
        mu, sigma = torch.meshgrid(centres, torch.tensor(sigmas, dtype=torch.float64), indexing="ij")
        self.mu = mu.flatten().to(device=device, dtype=dtype)  # (N,)
        self.sigma = sigma.flatten().to(device=device, dtype=dtype)  # (N,)

    def __len__(self) -> int:
        return len(self.mu)

    @classmethod
    def from_tensors(cls, mu: torch.Tensor, sigma: torch.Tensor) -> GaussianBasis:
        """A basis with the given centres and widths (N,), e.g. a module's buffers."""
        out = object.__new__(cls)
        out.mu, out.sigma = mu, sigma
        return out

    def to(self, device=None, dtype=None) -> GaussianBasis:
        return GaussianBasis.from_tensors(
            self.mu.to(device=device, dtype=dtype), self.sigma.to(device=device, dtype=dtype)
        )

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        """psi(t): (..., N) for t of any shape (...)."""
        z = (t[..., None] - self.mu) / self.sigma  # (..., N)
        return torch.exp(-0.5 * z**2) / (self.sigma * SQRT_2PI)


def cell_centres(n: int, device=None, dtype=torch.float64) -> torch.Tensor:
    """(i + 1/2) / n for i < n: where n memory vectors sit in [0, 1] (as the reference's fit does)."""
    return (torch.arange(n, device=device, dtype=dtype) + 0.5) / n


def contraction_positions(num_samples: int, num_new: int, tau: float) -> torch.Tensor:
    """Where an update places what it fits (M + L,): the M samples of the old signal, in order, at
    tau (j + 1/2) / M, inside (0, tau); the L new vectors at tau + (1 - tau) (i + 1/2) / L, in (tau, 1)."""
    return torch.cat([tau * cell_centres(num_samples), tau + (1 - tau) * cell_centres(num_new)])


def ridge_regression_matrix(
    basis: GaussianBasis, positions: torch.Tensor, ridge: float, pad: bool = True
) -> torch.Tensor:
    """G (L, N) such that B = G^T X (N, e) is the ridge fit of X (L, e) placed at `positions` (L,).

    Two fits. pad=False is the paper's equation: B = (F F^T + ridge I)^-1 F X with
    F = psi(positions)^T (N, L). pad=True is the reference code's (`compute_G` on
    `linspace(-0.5 + s, 1.5 - s, 2L)`): the fit also sees L // 2 zero vectors on each side of
    [0, 1], on a grid of spacing 1/L, and G keeps only the rows of the real vectors, so the signal
    is pulled to 0 outside [0, 1] and a density's mass that spills out of [0, 1] reads (almost)
    nothing. The price, measured for N = 64, sigmas (0.01, 0.05), ridge 1, L = 256 and a signal
    equal to 1 at the ends: the padded fit dips near each end, an error of up to 0.46 within 0.02
    of it (0.016 without padding), ~3% (pointwise) at 0.1-0.15 from it, 7% relative overall
    against 0.3%; only on [0.15, 0.85] is it under 2% everywhere. Solved in float64: F F^T is
    badly conditioned for narrow bumps.
    """
    t = positions.to(torch.float64)
    n = len(t)
    k = n // 2 if pad else 0
    if k:
        outside = (torch.arange(k, device=t.device, dtype=torch.float64) + 0.5) / n
        t = torch.cat([-outside.flip(0), t, 1 + outside])  # (L + 2k,)
    basis = basis.to(t.device, torch.float64)
    F = basis(t).T  # (N, L + 2k)
    A = F @ F.T + ridge * torch.eye(len(basis), device=t.device, dtype=torch.float64)  # (N, N)
    Gt = torch.linalg.solve(A, F)  # (N, L + 2k) = (F F^T + ridge I)^-1 F
    return Gt[:, k : k + n].T  # (L, N): the rows of the real vectors


def gaussian_expectation(mu: torch.Tensor, sigma_sq: torch.Tensor, basis: GaussianBasis) -> torch.Tensor:
    """r_n = E_{N(t; mu, sigma^2)}[psi_n(t)] = N(mu; mu_n, sigma^2 + sigma_n^2), explicitly: (..., N).

    The product of two Gaussians integrates to a Gaussian in the distance of their means. The
    integral is over the whole real line, not [0, 1], as in the reference.
    """
    var = sigma_sq[..., None] + basis.sigma**2  # (..., N)
    return torch.exp(-0.5 * (mu[..., None] - basis.mu) ** 2 / var) / torch.sqrt(2 * math.pi * var)


class ContinuousSoftmax(torch.autograd.Function):
    """r = E_p[psi(t)] for p = N(mu, sigma^2) in canonical form theta = (mu/sigma^2, -1/(2 sigma^2)).

    p(t) = exp(theta . phi(t) - A(theta)) with phi(t) = (t, t^2), so for any function psi
        d E_p[psi] / d theta = E[phi psi] - E[phi] E[psi] = Cov_p(phi(t), psi(t)),
    and for Gaussian psi_n the moments are closed-form: p(t) psi_n(t) = r_n N(t; m_n, v_n) with
    v_n = sigma^2 sigma_n^2 / (sigma^2 + sigma_n^2) and m_n = (mu sigma_n^2 + mu_n sigma^2) / (sigma^2 + sigma_n^2),
    so E[t psi_n] = r_n m_n and E[t^2 psi_n] = r_n (v_n + m_n^2). This is the reference's backward.
    """

    @staticmethod
    def forward(ctx, theta: torch.Tensor, basis_mu: torch.Tensor, basis_sigma: torch.Tensor) -> torch.Tensor:
        sigma_sq = -0.5 / theta[..., 1]  # (...,)
        mu = theta[..., 0] * sigma_sq
        var = sigma_sq[..., None] + basis_sigma**2  # (..., N)
        r = torch.exp(-0.5 * (mu[..., None] - basis_mu) ** 2 / var) / torch.sqrt(2 * math.pi * var)
        ctx.save_for_backward(mu, sigma_sq, basis_mu, basis_sigma, r)
        return r  # (..., N)

    @staticmethod
    def backward(ctx, grad_r: torch.Tensor):
        mu, sigma_sq, basis_mu, basis_sigma, r = ctx.saved_tensors
        mu, sigma_sq = mu[..., None], sigma_sq[..., None]  # (..., 1)
        total = sigma_sq + basis_sigma**2  # (..., N)
        m = (mu * basis_sigma**2 + basis_mu * sigma_sq) / total  # mean of p(t) psi_n(t) / r_n
        v = sigma_sq * basis_sigma**2 / total  # its variance
        cov_t = r * (m - mu)  # Cov(t, psi_n) = E[t psi_n] - E[t] E[psi_n]
        cov_t2 = r * (v + m**2 - mu**2 - sigma_sq)  # Cov(t^2, psi_n)
        grad_theta = torch.stack([(grad_r * cov_t).sum(-1), (grad_r * cov_t2).sum(-1)], dim=-1)  # (..., 2)
        return grad_theta, None, None


def continuous_softmax(mu: torch.Tensor, sigma_sq: torch.Tensor, basis: GaussianBasis) -> torch.Tensor:
    """The same r as `gaussian_expectation`, through ContinuousSoftmax's exponential-family backward."""
    theta = torch.stack([mu / sigma_sq, -0.5 / sigma_sq], dim=-1)  # (..., 2)
    return ContinuousSoftmax.apply(theta, basis.mu, basis.sigma)


def bin_masses(mu: torch.Tensor, sigma_sq: torch.Tensor, num_bins: int = 128) -> torch.Tensor:
    """Attention mass per bin of [0, 1], summed over densities: (..., Q) Gaussians -> (..., D).

    Sticky memories' histogram: bin j gets sum_q integral over [j/D, (j+1)/D] of N(t; mu_q, sigma_q^2).
    """
    if isinstance(num_bins, bool) or not isinstance(num_bins, int) or num_bins <= 0:
        raise ValueError(f"num_bins must be a positive int, got {num_bins!r}")
    edges = torch.linspace(0, 1, num_bins + 1, device=mu.device, dtype=mu.dtype)  # (D + 1,)
    z = (edges - mu[..., None]) / torch.sqrt(2 * sigma_sq[..., None])  # (..., Q, D + 1)
    cdf = 0.5 * (1 + torch.erf(z))
    return (cdf[..., 1:] - cdf[..., :-1]).sum(-2)  # (..., D)


def sample_sticky_positions(
    masses: torch.Tensor, num_samples: int, generator: torch.Generator | None = None, jitter: bool = True
) -> torch.Tensor:
    """Draw `num_samples` sorted points of [0, 1] from a histogram (..., D) of bin masses: (..., M).

    A bin is drawn with probability proportional to its mass; the point is then uniform inside it
    (jitter=True) or its left edge (jitter=False, the reference's behaviour, which never reads the
    right end of the memory and puts every sample of a bin on the same point).
    """
    D = masses.shape[-1]
    flat = masses.reshape(-1, D).to(torch.float64).clamp(min=0)  # (rows, D)
    empty = flat.sum(-1, keepdim=True) <= 0
    flat = torch.where(empty, torch.ones_like(flat), flat)  # no mass in [0, 1]: fall back to uniform
    bins = torch.multinomial(flat, num_samples, replacement=True, generator=generator)  # (rows, M)
    t = bins.to(torch.float64)
    if jitter:
        t = t + torch.rand(bins.shape, generator=generator, device=bins.device, dtype=torch.float64)
    t = t / D
    return t.sort(-1).values.reshape(*masses.shape[:-1], num_samples)  # (..., M)
