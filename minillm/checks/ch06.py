"""Checkers for chapter 06 (MEGABYTE: the patch embedder, the two shifts, generation's global calls)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..megabyte import Megabyte, MegabyteConfig
from .core import CheckFailed, CheckResult, compare, run_check, tensor_result

V = 259  # bytes + BOS, SINK, PAD: the course's vocabulary


def _model(patch_size: int, d_global: int = 8, d_local: int = 16, max_patches: int = 16, seed: int = 0) -> Megabyte:
    """A small seeded MEGABYTE (one layer per stack) whose methods are the references."""
    torch.manual_seed(seed)
    config = MegabyteConfig(
        patch_size=patch_size, d_global=d_global, n_global_layers=1, n_global_heads=2,
        d_local=d_local, n_local_layers=1, n_local_heads=2, max_patches=max_patches,
    )  # fmt: skip
    return Megabyte(config).eval()


def _ids(seed: int, B: int, T: int) -> torch.Tensor:
    return torch.randint(0, 256, (B, T), generator=torch.Generator().manual_seed(seed))


def _located(
    name: str, result: object, expected: torch.Tensor, where: Callable[[tuple[int, ...]], str]
) -> torch.Tensor:
    """The learner's tensor; where it differs from `expected`, a CheckFailed naming the first wrong
    entry in the exercise's terms (which patch, slot, byte), not as a bare index."""
    got = tensor_result(result, name)
    if got.shape == expected.shape and compare(got, expected):
        bad = ~torch.isclose(got.to(expected.dtype), expected, atol=1e-5, rtol=1e-5)
        index = tuple(bad.nonzero()[0].tolist())
        raise CheckFailed(
            f"{int(bad.sum())} of {bad.numel()} entries differ; the first is {where(index)}: "
            f"{got[index].item():.6g} instead of {expected[index].item():.6g}"
        )
    return got


def check_patch_embed(patch_embed: Callable, hint: int | None = None) -> CheckResult:
    """patch_embed(ids, token_emb, pos_emb, patch_size) -> (B, K, P·D_G), like Megabyte.global_inputs unshifted."""

    def reference(ids, token_emb, pos_emb, patch_size):
        model = _model(patch_size, d_global=token_emb.shape[1], max_patches=len(pos_emb) // patch_size)
        model.global_embed.weight.data, model.global_pos.weight.data = token_emb, pos_emb
        model.shift_global = False
        with torch.no_grad():
            return model.global_inputs(ids, 0, ids.shape[1] // patch_size)

    def student(ids, token_emb, pos_emb, patch_size):
        D = token_emb.shape[1]
        return _located(
            "patch_embed",
            patch_embed(ids, token_emb, pos_emb, patch_size),
            reference(ids, token_emb, pos_emb, patch_size),
            lambda i: (
                f"[{i[0]}, {i[1]}, {i[2]}] = feature {i[2] % D} of byte t = {i[1] * patch_size + i[2] // D} "
                f"(slot {i[2] // D} of patch {i[1]})"
            ),
        )

    cases = []
    for seed, (B, T, P, D) in enumerate([(1, 8, 4, 8), (2, 12, 2, 6), (3, 16, 8, 4), (1, 5, 1, 12)]):
        g = torch.Generator().manual_seed(seed)
        cases.append((_ids(seed, B, T), torch.randn(V, D, generator=g), torch.randn(2 * T, D, generator=g), P))
    return run_check(
        "patch_embed",
        student,
        reference,
        cases,
        hints=(
            "each byte's vector is its token embedding plus the position embedding of its index t in the whole "
            "sequence; patch k then holds bytes kP ... kP + P - 1, one after another, each D_G features wide",
            "build the (B, T, D_G) byte vectors first (two table lookups, one by byte value, one by position "
            "0 ... T-1), then regroup the T axis into K patches of P consecutive bytes and merge each patch's "
            "(P, D_G) into one row, slot-major: no transpose is needed",
        ),
        describe=lambda c: f"ids {tuple(c[0].shape)}, D_G = {c[1].shape[1]}, P = {c[3]}",
        level=hint,
    )


def check_global_shift(global_shift: Callable, hint: int | None = None) -> CheckResult:
    """global_shift(h, pad) -> (B, K, C): position k holds patch k - 1 and position 0 the pad."""
    cases = []
    for seed, (B, T, P) in enumerate([(1, 16, 4), (2, 24, 8), (3, 4, 4), (1, 6, 1)]):
        model, ids = _model(P, seed=seed), _ids(seed, B, T)
        with torch.no_grad():
            model.shift_global = False
            h = model.global_inputs(ids, 0, T // P)  # (B, K, P·D_G), not shifted
            model.shift_global = True
            expected = model.global_inputs(ids, 0, T // P)  # the package's shifted inputs
        cases.append((h, model.global_pad.detach().clone(), expected))

    def where(index: tuple[int, ...]) -> str:
        return f"feature {index[2]} of position {index[1]} (row {index[0]})"

    return run_check(
        "global_shift",
        lambda h, pad, expected: _located("global_shift", global_shift(h, pad), expected, where),
        lambda h, pad, expected: expected,
        cases,
        hints=(
            "position 0 must hold the pad, and position k (k >= 1) patch k - 1 of the same row: the last patch "
            "is dropped, nothing wraps around, and the batch axis is untouched",
            "two pieces joined along the patch axis (dim 1): the pad, given one batch copy per row and a patch "
            "axis of length 1, then every patch but the last",
        ),
        describe=lambda c: f"h {tuple(c[0].shape)}",
        level=hint,
    )


def check_local_input(local_input: Callable, hint: int | None = None) -> CheckResult:
    """local_input(slices, patches, local_emb, pad) -> (N, P, D_L), like Megabyte.local_inputs."""

    def reference(slices, patches, local_emb, pad):
        model = _model(patches.shape[1], d_local=local_emb.shape[1])
        model.local_embed.weight.data, model.local_pad.data = local_emb, pad
        with torch.no_grad():
            return model.local_inputs(slices, patches[:, :-1], first=True)

    cases = []
    for seed, (N, P, D) in enumerate([(1, 4, 8), (3, 8, 16), (2, 1, 4), (5, 2, 12)]):
        g = torch.Generator().manual_seed(seed)
        slices, emb, pad = (
            torch.randn(N, P, D, generator=g),
            torch.randn(V, D, generator=g),
            torch.randn(D, generator=g),
        )
        cases.append((slices, _ids(seed, N, P), emb, pad))

    def student(slices, patches, local_emb, pad):
        return _located(
            "local_input",
            local_input(slices, patches, local_emb, pad),
            reference(slices, patches, local_emb, pad),
            lambda i: f"feature {i[2]} of slot {i[1]} of patch {i[0]}",
        )

    return run_check(
        "local_input",
        student,
        reference,
        cases,
        hints=(
            "slot p of a patch must add the local embedding of the byte just before it in the *same* patch; "
            "slot 0 has no such byte and adds the pad; and the slices are part of the sum",
            "look up the local embeddings of every byte but each patch's last one, put the pad in front of them "
            "along the slot axis (one copy per patch), and add the slices: each patch's own bytes, one slot later",
        ),
        describe=lambda c: f"slices {tuple(c[0].shape)}, patches {tuple(c[1].shape)}",
        level=hint,
    )


def _generation_counts(n_prompt: int, n_new: int, patch_size: int) -> tuple[int, int]:
    model = _model(patch_size, max_patches=-(-(n_prompt + n_new) // patch_size) + 1)
    model.generate(_ids(n_prompt, 1, n_prompt)[0].tolist(), n_new)
    return model.stats.global_calls, model.stats.global_patches


def check_count_global_calls(
    count_global_calls: Callable[[int, int, int], tuple[int, int]], hint: int | None = None
) -> CheckResult:
    """count_global_calls(n_prompt, n_new, patch_size) -> (global calls, patch positions computed)."""

    def student(n_prompt, n_new, patch_size):
        result = count_global_calls(n_prompt, n_new, patch_size)
        if not isinstance(result, tuple) or len(result) != 2:
            raise CheckFailed("count_global_calls must return a tuple (global_calls, global_patches)")
        if any(isinstance(r, bool) or not isinstance(r, int) for r in result):
            raise CheckFailed(f"both counts must be ints, got {result!r}: count patches with integer arithmetic")
        return result

    cases = [(1, 8, 4), (4, 4, 4), (13, 30, 8), (8, 1, 8), (3, 9, 1), (5, 0, 4), (0, 10, 4), (9, 7, 4)]
    return run_check(
        "count_global_calls",
        student,
        _generation_counts,
        cases,
        hints=(
            "count the calls by hand on the failing case: write out the new positions n_prompt ... "
            "n_prompt + n_new - 1, mark which start a patch, and remember the first new byte already has its call",
            "calls: the one at the start, plus one per *later* new byte at slot 0. Patches: every patch is computed "
            "exactly once, so count the patches the final sequence touches, a partial last one included",
        ),
        describe=lambda c: f"n_prompt={c[0]}, n_new={c[1]}, P={c[2]}",
        level=hint,
    )


def check_loss_by_slot(
    loss_by_slot: Callable[[torch.Tensor, int], torch.Tensor], hint: int | None = None
) -> CheckResult:
    """loss_by_slot(nll, patch_size) -> (P,): mean of nll (B, T) over the positions t with t % P == p."""
    g = torch.Generator().manual_seed(0)
    cases = [(torch.rand(2, 16, generator=g, dtype=torch.float64), 4), (torch.rand(3, 24, generator=g), 8),
             (torch.rand(1, 6, generator=g, dtype=torch.float64), 1), (torch.rand(4, 10, generator=g), 2)]  # fmt: skip
    return run_check(
        "loss_by_slot",
        lambda *case: tensor_result(loss_by_slot(*case), "loss_by_slot"),
        lambda nll, P: nll.reshape(nll.shape[0], -1, P).mean(dim=(0, 1)),
        cases,
        hints=(
            "entry p averages every byte at slot p (t = p, p + P, p + 2P, ...) over all rows of the batch",
            "split the time axis into (patches, slots) with the slot varying fastest, then average over every "
            "axis except the slot one",
        ),
        describe=lambda c: f"nll {tuple(c[0].shape)}, P={c[1]}",
        level=hint,
    )


HOLDS = "the split is causal and loses nothing"


def _causal_split_holds(split: Callable, ids: torch.Tensor, patch_size: int, pad_id: int) -> str:
    """The property of exercise 8, tested by changing one byte at a time (CheckFailed naming the first
    violation): row k of patch-split ids may hold no byte of patch k or later, rows 0..k together must
    hold every byte before patch k, an entry that holds no byte holds pad_id, and rows never mix."""
    B, T = ids.shape
    K, P = T // patch_size, patch_size
    out = tensor_result(split(ids.clone(), P, pad_id), "causal_patches")
    if out.dtype not in (torch.int64, torch.int32) or tuple(out.shape) != (B, K, P):
        got = f"a tensor {tuple(out.shape)} {str(out.dtype).removeprefix('torch.')}"
        raise CheckFailed(f"causal_patches must return byte ids (B, K, P) = {(B, K, P)} as integers; got {got}")
    holds_a_byte = torch.zeros(B, K, P, dtype=torch.bool)
    for b in range(B):
        for t in range(T):
            other = ids.clone()
            other[b, t] = (other[b, t] + 1) % 256  # another byte value
            moved = split(other, P, pad_id) != out  # (B, K, P)
            holds_a_byte |= moved
            if moved[torch.arange(B) != b].any():
                raise CheckFailed(f"changing byte {t} of batch row {b} changes another batch row")
            rows = sorted(set(moved[b].nonzero()[:, 0].tolist()))
            if rows and rows[0] <= t // P:
                raise CheckFailed(
                    f"byte {t} (patch {t // P}) shows up in row {rows[0]}: the global output for patch {rows[0]} "
                    f"would see a byte it has to predict, or a later one"
                )
            if t // P + 1 < K and not rows:
                raise CheckFailed(
                    f"byte {t} (patch {t // P}) shows up in no row: the global output for patch {t // P + 1} "
                    f"(and every later one) never sees it"
                )
            if rows and rows[0] > t // P + 1:
                raise CheckFailed(
                    f"byte {t} (patch {t // P}) first shows up in row {rows[0]}: the global output for patch "
                    f"{t // P + 1} could use it, but rows 0..{t // P + 1} do not hold it"
                )
    empty = out[~holds_a_byte]
    if (empty != pad_id).any():
        raise CheckFailed(
            f"an entry that holds no byte holds {empty[empty != pad_id][0].item()} instead of pad_id = {pad_id}: "
            "a pad that is also a byte value reads as that byte"
        )
    return HOLDS


def check_causal_patches(
    causal_patches: Callable[[torch.Tensor, int, int], torch.Tensor], hint: int | None = None
) -> CheckResult:
    """causal_patches(ids, patch_size, pad_id) -> (B, K, P) ids for the global model: the property of exercise 8."""
    cases = [(_ids(0, 1, 8), 4), (_ids(1, 2, 12), 4), (_ids(2, 1, 16), 8), (_ids(3, 2, 6), 2), (_ids(4, 1, 3), 1)]
    return run_check(
        "causal_patches",
        lambda ids, P: _causal_split_holds(causal_patches, ids, P, 258),
        lambda ids, P: HOLDS,
        cases,
        hints=(
            "ask of each row k which bytes it may hold: the global output for patch k predicts the bytes of "
            "patch k and sees rows 0..k, so those rows may hold no byte of patch k or later, yet together they "
            "must hold every byte before patch k",
            "row 0 can hold no byte at all (fill it with pad_id), and each later row has room for exactly one "
            "patch: the one the row before it could not hold yet",
        ),
        describe=lambda c: f"ids {tuple(c[0].shape)}, P = {c[1]}, pad_id = 258",
        level=hint,
    )
