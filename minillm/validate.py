"""The rules every entry point applies to its arguments, written once.

Each check raises TypeError (wrong kind of value) or ValueError (right kind, wrong value) with a
message that names the argument and the rule, e.g. "window must be an int >= 1, got 0". Python
lets a bool pass as an int and a float pass through `int()`, and torch casts float ids to long
without a word: these checks say no to both, because a silent cast gives a wrong answer, not an
error. The argparse types at the end apply the same rules to command-line flags.
"""

from __future__ import annotations

import argparse
import math
import numbers
from collections.abc import Callable

import torch

INT64 = 2**63  # torch indexes, sizes and positions are int64: anything beyond fails inside torch
MAX_ELEMENTS = 2**30  # a tensor the course builds from a size: 1 G entries (of 4-8 bytes) is past a laptop's


def check_int(
    name: str, value: object, minimum: int | None = None, maximum: int | None = None, *, optional: bool = False
) -> int | None:
    """`value` as an int, which it must be (not a bool, not a float), within [minimum, maximum];
    None too if `optional`."""
    if optional and value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int{' or None' if optional else ''}, got {type(value).__name__}")
    value = int(value)
    if not -INT64 <= value < INT64:
        raise ValueError(f"{name} must fit in int64, got {value}")
    if minimum is not None and maximum is not None and not minimum <= value <= maximum:
        raise ValueError(f"{name} must lie in {minimum}..{maximum}, got {value}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be an int <= {maximum}, got {value}")
    return value


def check_elements(name: str, n_elements: int) -> None:
    """Refuse, before allocating it, a tensor of `n_elements` entries that no memory holds."""
    if n_elements > MAX_ELEMENTS:
        raise ValueError(f"{name} = {n_elements} entries is more than any memory holds (at most {MAX_ELEMENTS})")


def check_device(name: str, x: torch.Tensor, device: torch.device) -> None:
    """A tensor must be on the device of what it meets (else torch fails deep inside)."""
    if x.device != device:
        raise ValueError(f"{name} is on {x.device}, the model on {device}: move it with .to({str(device)!r})")


def check_ints(**rules: tuple[object, int]) -> None:
    """check_int for several arguments in one line: check_ints(top_k=(top_k, 0), window=(window, 1))."""
    for name, (value, minimum) in rules.items():
        check_int(name, value, minimum)


def check_instance(name: str, value: object, kind: type) -> object:
    """`value`, which must be an instance of `kind` (a model, a config, a cache)."""
    if not isinstance(value, kind):
        raise TypeError(f"{name} must be a {kind.__name__}, got {type(value).__name__}")
    return value


def check_float(name: str, value: object, minimum: float | None = None, *, above: bool = False) -> float:
    """`value` as a finite float (an int is fine, a bool or NaN is not), >= minimum (> with `above`)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if minimum is not None and (value <= minimum if above else value < minimum):
        raise ValueError(f"{name} must be {'>' if above else '>='} {minimum}, got {value}")
    return value


def check_choice(name: str, value: object, choices: tuple) -> object:
    """`value`, which must be one of `choices` (a mode given by name, e.g. "clamp")."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def check_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return value


def utf8(name: str, text: object) -> bytes:
    """The UTF-8 bytes of `text`, which must be a str of valid Unicode (no lone surrogates)."""
    if not isinstance(text, str):
        raise TypeError(f"{name} must be a str, got {type(text).__name__}")
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as e:  # a lone surrogate such as "\ud800" has no UTF-8 bytes
        bad = e.object[e.start : e.end]
        raise ValueError(f"{name} must be valid Unicode: {bad!r} at index {e.start} is a lone surrogate") from None


def _integer(x: torch.Tensor) -> bool:
    return not (x.dtype == torch.bool or x.is_floating_point() or x.is_complex())


def check_token_ids(name: str, ids: object, vocab_size: int | None = None) -> list[int]:
    """Token ids as a list of ints: a sequence of ints or a 1-D integer tensor, never floats,
    bools or a str (whose characters would pass one by one), each in 0..vocab_size-1."""
    if isinstance(ids, (str, bytes)):
        raise TypeError(f"{name} must be a sequence of int token ids, got {type(ids).__name__}")
    if isinstance(ids, torch.Tensor):
        if not _integer(ids):
            raise TypeError(f"{name} must hold integer token ids, got a {ids.dtype} tensor")
        if ids.dim() != 1:
            raise ValueError(f"{name} must be 1-D, got shape {tuple(ids.shape)}")
        ids = ids.tolist()
    try:
        ids = list(ids)
    except TypeError:
        raise TypeError(f"{name} must be a sequence of int token ids, got {type(ids).__name__}") from None
    # a 0-d integer tensor (iterating over a 1-D one gives those) is one id
    ids = [i.item() if isinstance(i, torch.Tensor) and i.dim() == 0 and _integer(i) else i for i in ids]
    bad = next((i for i in ids if isinstance(i, bool) or not isinstance(i, numbers.Integral)), None)
    if bad is not None:
        raise TypeError(f"{name} must hold int token ids only, got {type(bad).__name__} {bad!r}")
    ids = [int(i) for i in ids]
    if vocab_size is not None and ids and (min(ids) < 0 or max(ids) >= vocab_size):
        raise ValueError(f"{name} must lie in 0..{vocab_size - 1}, got {min(ids)}..{max(ids)}")
    return ids


def check_finite(**tensors: torch.Tensor) -> None:
    """Refuse NaN or inf in any of the named floating tensors (check_finite(q=q, k=k, v=v)).

    Attention cannot contain a bad key: a NaN value reaches rows that never attend to it (their
    weight 0 times NaN is NaN), and whether it does depends on the path (SDPA, explicit softmax, the
    kernel's tiles), so a non-finite input is an error everywhere. One sum per tensor is the filter:
    NaN and inf survive a sum, and a finite tensor whose sum overflows falls through to the exact
    test. It reads each tensor once and allocates nothing (0.5-4.5 % of an SDPA call, measured).
    """
    with torch.no_grad():
        total = sum(x.detach().sum() for x in tensors.values())
        if torch.isfinite(torch.as_tensor(total)):
            return
        for name, x in tensors.items():
            bad = ~torch.isfinite(x.detach())
            if bad.any():
                where = tuple(int(i) for i in bad.nonzero()[0])
                raise ValueError(
                    f"{name} must be finite, but {name}{list(where)} is {x[where].item()}: a NaN or inf in attention "
                    "spreads to rows that never attend to it"
                )


def check_qkv(q: object, k: object, v: object, same_length: bool = True, any_batch: bool = False) -> None:
    """Attention inputs: floating tensors (B, H, T, D), k and v of one shape (B, H, S, D) with S = T
    unless `same_length` is False, one dtype, one device, no NaN or inf. With `any_batch`, any
    leading dims that broadcast, e.g. (T, D), and values of another width (the explicit reference). (torch would
    broadcast a key with one head against many, or fail deep inside with a dtype error.)"""
    for name, x in (("q", q), ("k", k), ("v", v)):
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise TypeError(
                f"{name} must be a floating tensor (B, H, T, D), got {getattr(x, 'dtype', type(x).__name__)}"
            )
    if any_batch:
        rule = "be (..., T, D), (..., S, D), (..., S, Dv) with leading dims that broadcast"
        ok = q.dim() >= 2 and k.dim() >= 2 and k.shape[:-1] == v.shape[:-1] and q.shape[-1] == k.shape[-1]
        try:
            torch.broadcast_shapes(q.shape[:-2], k.shape[:-2])
        except RuntimeError:
            ok = False
        ok = ok and (q.shape[-2] == k.shape[-2] or not same_length)
    else:
        rule = "share one shape (B, H, T, D)" if same_length else "be (B, H, T, D), (B, H, S, D), (B, H, S, D)"
        lengths_ok = q.shape == k.shape if same_length else q.shape[:2] + q.shape[3:] == k.shape[:2] + k.shape[3:]
        ok = q.dim() == 4 and k.dim() == 4 and lengths_ok and k.shape == v.shape
    if not ok:
        raise ValueError(f"q, k, v must {rule}, got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"q, k, v must have one dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if not (q.device == k.device == v.device):
        raise ValueError(f"q, k, v must be on one device, got {q.device}, {k.device}, {v.device}")
    check_finite(q=q, k=k, v=v)


def check_mask_rows(name: str, mask: torch.Tensor) -> None:
    """Refuse a bool mask (..., T, S) in which some query row may see no key: its softmax is 0/0,
    which SDPA turns into one answer and the explicit softmax into NaN. A causal language model's
    row always sees at least itself."""
    empty = ~mask.any(dim=-1)  # (..., T)
    if empty.any():
        row = int(empty.nonzero()[0, -1])
        raise ValueError(f"{name} gives query row {row} no key to attend to (every row must see at least one key)")


def check_ids(ids: object, vocab_size: int, device: torch.device | None = None) -> tuple[int, int]:
    """A model's token ids: an integer tensor (B, T), B and T >= 1, each id in 0..vocab_size-1,
    on `device` (the model's) if given. Returns (B, T)."""
    if not isinstance(ids, torch.Tensor) or ids.dtype not in (torch.long, torch.int32):
        raise TypeError(f"ids must be an integer tensor (B, T), got {getattr(ids, 'dtype', type(ids))}")
    if device is not None:
        check_device("ids", ids, device)
    if ids.dim() != 2 or ids.shape[1] == 0:
        raise ValueError(f"ids must have shape (B, T) with T >= 1, got {tuple(ids.shape)}")
    if ids.shape[0] == 0:
        raise ValueError(f"ids must have shape (B, T) with B >= 1, got {tuple(ids.shape)}")
    lo, hi = torch.stack(torch.aminmax(ids)).tolist()  # one pass, one read-back (a GPU waits once)
    if lo < 0 or hi >= vocab_size:
        raise ValueError(f"ids must lie in 0..{vocab_size - 1}, got {lo}..{hi}")
    return ids.shape[0], ids.shape[1]


def check_positions(positions: object, T: int) -> None:
    """RoPE positions of T tokens: None, or an integer tensor (T,) that never goes backwards (RoPE
    would rotate by any positions without complaint)."""
    if positions is None:
        return
    if not isinstance(positions, torch.Tensor):
        raise TypeError(f"positions must be an integer tensor (T,) or None, got {type(positions).__name__}")
    if not _integer(positions):
        raise TypeError(f"positions must be an integer tensor (T,), got {positions.dtype}")
    if positions.dim() != 1 or len(positions) != T:
        raise ValueError(f"positions must have shape (T,) with T={T}, got {tuple(positions.shape)}")
    if len(positions) > 1 and (positions[1:] < positions[:-1]).any():
        raise ValueError("positions must be non-decreasing (token t sits at or after token t-1)")


# argparse types: a bad flag ends the command with "argument --x: invalid ... value" before any work.


def _argtype(kind: Callable[[str], object], rule: str, ok: Callable[[object], bool]) -> Callable[[str], object]:
    def parse(text: str) -> object:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {rule}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"must be {rule}, got {text!r}")
        return value

    parse.__name__ = rule  # argparse names the type in its message
    return parse


positive_int = _argtype(int, "an int >= 1", lambda v: v >= 1)
nonnegative_int = _argtype(int, "an int >= 0", lambda v: v >= 0)
nonnegative_float = _argtype(float, "a finite number >= 0", lambda v: math.isfinite(v) and v >= 0)
positive_float = _argtype(float, "a finite number > 0", lambda v: math.isfinite(v) and v > 0)
checkpoint_name = _argtype(
    str, "a non-empty name without '/' or '\\'", lambda v: v.strip() == v and v and not set(v) & set("/\\")
)


def device_arg(text: str) -> str:
    """A --device flag: a name torch.device accepts ("cpu", "cuda", "cuda:1"), returned as given."""
    try:
        torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"must be a torch device such as cpu or cuda, got {text!r}") from None
    return text
