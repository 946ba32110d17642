"""Chapter 07's checkers pass the package's functions, fail wrong ones, and report stubs."""

import math

import pytest
import torch

from minillm.checks import ch07
from minillm.continuous_attention import (
    GaussianBasis,
    bin_masses,
    contraction_positions,
    gaussian_expectation,
    ridge_regression_matrix,
)


def package_basis_matrix(t, num_basis, sigmas):
    return GaussianBasis(num_basis, sigmas)(t)


def package_ridge_fit(x, t, num_basis, sigmas, ridge):
    return ridge_regression_matrix(GaussianBasis(num_basis, sigmas), t, ridge, pad=False).T @ x


def package_expected_basis(mu, sigma_sq, basis_mu, basis_sigma):
    return gaussian_expectation(mu, sigma_sq, GaussianBasis.from_tensors(basis_mu, basis_sigma))


def package_contract(coef, x_new, tau, num_samples, num_basis, sigmas, ridge):
    """The contraction written with the package's pieces (independently of ContinuousMemory.update)."""
    basis = GaussianBasis(num_basis, sigmas)
    s = (torch.arange(num_samples, dtype=torch.float64) + 0.5) / num_samples
    L = len(x_new)
    positions = torch.cat([tau * s, tau + (1 - tau) * (torch.arange(L, dtype=torch.float64) + 0.5) / L])
    G = ridge_regression_matrix(basis, positions, ridge, pad=False)  # (M + L, N)
    return G.T @ torch.cat([basis(s) @ coef, x_new])


def package_bin_masses(mu, sigma_sq, num_bins):
    return bin_masses(mu, sigma_sq, num_bins)


def unit_height_basis(t, num_basis, sigmas):  # forgets the 1 / (sigma sqrt(2 pi)) normalisation
    return GaussianBasis(num_basis, sigmas)(t) * GaussianBasis(num_basis, sigmas).sigma * math.sqrt(2 * math.pi)


def ridge_forgotten(x, t, num_basis, sigmas, ridge):  # plain least squares, lambda = 0
    F = GaussianBasis(num_basis, sigmas)(t).T  # (N, L)
    return torch.linalg.lstsq(F.T, x).solution


def variances_not_added(mu, sigma_sq, basis_mu, basis_sigma):  # uses sigma_n instead of sigma_n^2
    var = sigma_sq[..., None] + basis_sigma
    return torch.exp(-0.5 * (mu[..., None] - basis_mu) ** 2 / var) / torch.sqrt(2 * math.pi * var)


def no_squeeze(coef, x_new, tau, num_samples, num_basis, sigmas, ridge):  # old signal left on [0, 1]
    basis = GaussianBasis(num_basis, sigmas)
    s = (torch.arange(num_samples, dtype=torch.float64) + 0.5) / num_samples
    positions = torch.cat([s, tau + (1 - tau) * (torch.arange(len(x_new), dtype=torch.float64) + 0.5) / len(x_new)])
    return ridge_regression_matrix(basis, positions, ridge, pad=False).T @ torch.cat([basis(s) @ coef, x_new])


def densities_at_bin_centres(mu, sigma_sq, num_bins):  # density value x width instead of the integral
    centres = (torch.arange(num_bins, dtype=mu.dtype) + 0.5) / num_bins
    dens = torch.exp(-0.5 * (centres - mu[:, None]) ** 2 / sigma_sq[:, None]) / torch.sqrt(
        2 * math.pi * sigma_sq[:, None]
    )
    return dens.sum(0) / num_bins


def package_append(coef, x_new, tau, basis):  # the package's own rule for where an update places what it fits
    s = (torch.arange(512, dtype=torch.float64) + 0.5) / 512
    positions = contraction_positions(512, len(x_new), tau)
    return ridge_regression_matrix(basis, positions, 1.0, pad=False).T @ torch.cat([basis(s) @ coef, x_new])


def append_forgetting_the_past(coef, x_new, tau, basis):  # only the new vectors, fitted in (tau, 1]
    positions = tau + (1 - tau) * (torch.arange(len(x_new), dtype=torch.float64) + 0.5) / len(x_new)
    return ridge_regression_matrix(basis, positions, 1.0, pad=False).T @ x_new


CASES = [
    (ch07.check_basis_matrix, package_basis_matrix, unit_height_basis),
    (ch07.check_ridge_fit, package_ridge_fit, ridge_forgotten),
    (ch07.check_expected_basis, package_expected_basis, variances_not_added),
    (ch07.check_contract, package_contract, no_squeeze),
    (ch07.check_bin_masses, package_bin_masses, densities_at_bin_centres),
    (ch07.check_append, package_append, append_forgetting_the_past),
]


@pytest.mark.parametrize("check, right, wrong", CASES, ids=lambda f: getattr(f, "__name__", ""))
def test_checker_passes_the_package_function_and_fails_a_wrong_one(check, right, wrong, checker_contract):
    checker_contract.passes_right_fails_wrong(check, right, wrong)


@pytest.mark.parametrize("check", [c[0] for c in CASES], ids=lambda f: f.__name__)
def test_checker_reports_a_stub_as_not_implemented_and_catches_errors(check, checker_contract):
    checker_contract.reports_stubs_and_errors(check, [1.0], "must return a tensor")
