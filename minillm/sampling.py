"""Drawing a token from a distribution, the same way on every torch build."""

from __future__ import annotations

import torch


def draw(probs: torch.Tensor, generator: torch.Generator | None) -> int:
    """One index drawn from the weights `probs` (V,) with a single uniform from `generator`.

    Inverse transform sampling, written out rather than `torch.multinomial`, whose algorithm has
    changed between torch releases: the same seed must give the same text on every install.
    """
    if not isinstance(probs, torch.Tensor) or probs.dim() != 1 or not probs.is_floating_point():
        raise TypeError(f"probs must be a 1-D floating tensor, got {getattr(probs, 'dtype', type(probs).__name__)}")
    if generator is not None and not isinstance(generator, torch.Generator):  # None: torch's global one
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    if not (torch.isfinite(probs).all() and (probs >= 0).all() and probs.sum() > 0):
        raise ValueError("probs must be finite and >= 0 with a positive sum")
    cdf = probs.double().cumsum(0)  # (V,); a zero-weight index owns an empty interval
    u = torch.rand((), generator=generator, dtype=torch.float64) * cdf[-1]
    return int(torch.searchsorted(cdf, u, right=True).clamp(max=len(cdf) - 1))
