"""Drawing a token from a distribution, the same way on every torch build."""

from __future__ import annotations

import torch


def draw(probs: torch.Tensor, generator: torch.Generator) -> int:
    """One index drawn from the weights `probs` (V,) with a single uniform from `generator`.

    Inverse transform sampling, written out rather than `torch.multinomial`, whose algorithm has
    changed between torch releases: the same seed must give the same text on every install.
    """
    cdf = probs.double().cumsum(0)  # (V,); a zero-weight index owns an empty interval
    u = torch.rand((), generator=generator, dtype=torch.float64) * cdf[-1]
    return int(torch.searchsorted(cdf, u, right=True).clamp(max=len(cdf) - 1))
