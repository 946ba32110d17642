"""The one sampler: the next token from a model's logits, the same way on every torch build.

Convention, everywhere in the package: temperature 0 is greedy (the argmax); a temperature > 0
draws from softmax(logits / temperature) over the `top_k` largest logits (all if None), with one
uniform from a seeded generator. `Megabyte.generate` also accepts None, its old spelling of greedy.
"""

from __future__ import annotations

import torch

from .validate import check_float, check_int


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


MIN_TEMPERATURE = 1e-30  # below it logits / temperature overflow float32: greedy without a word


def check_sampling(temperature: object, top_k: object) -> float:
    """temperature a finite number, 0 (greedy) or >= MIN_TEMPERATURE; top_k an int >= 1 or None.
    Returns the temperature as a float."""
    temperature = check_float("temperature", temperature, 0)
    if 0 < temperature < MIN_TEMPERATURE:
        raise ValueError(f"temperature {temperature} underflows (logits / temperature overflow): use 0 for greedy")
    check_int("top_k", top_k, 1, optional=True)
    return temperature


def next_token_probs(logits: torch.Tensor, temperature: float, top_k: int | None = None) -> torch.Tensor:
    """softmax(logits / temperature) over the top_k largest logits (all if None); (..., V) float64."""
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point():
        raise TypeError(f"logits must be a floating tensor, got {getattr(logits, 'dtype', type(logits).__name__)}")
    temperature = check_sampling(temperature, top_k)
    if temperature == 0:
        raise ValueError("temperature must be > 0 here (temperature 0 is the argmax, not a distribution)")
    scaled = logits.double() / temperature
    if not torch.isfinite(scaled).all():  # a tiny temperature overflows: shift by the max first (same softmax)
        scaled = (logits.double() - logits.double().amax(-1, keepdim=True)) / temperature
    logits = scaled
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[..., -1:]  # (..., 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return torch.softmax(logits, dim=-1)


def choose(logits: torch.Tensor, temperature: float, top_k: int | None, generator: torch.Generator | None) -> int:
    """The next token from logits (V,): the argmax at temperature 0, else a seeded draw."""
    if temperature == 0:
        return int(logits.argmax())
    probs = next_token_probs(logits.cpu(), temperature, top_k)  # (V,) on the CPU, where the generator is
    return draw(probs, generator)
