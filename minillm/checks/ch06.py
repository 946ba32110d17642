"""Checkers for chapter 06 (MEGABYTE: the patch embedder, the two shifts, generation's global calls)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..megabyte import Megabyte, MegabyteConfig
from .core import CheckFailed, run_check

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


def _tensor_result(result: object) -> torch.Tensor:
    if not isinstance(result, torch.Tensor):
        raise CheckFailed(f"must return a tensor, got {type(result).__name__}")
    return result


def check_patch_embed(patch_embed: Callable) -> bool:
    """patch_embed(ids, token_emb, pos_emb, patch_size) -> (B, K, P·D_G), like Megabyte.global_inputs unshifted."""

    def reference(ids, token_emb, pos_emb, patch_size):
        model = _model(patch_size, d_global=token_emb.shape[1], max_patches=len(pos_emb) // patch_size)
        model.global_embed.weight.data, model.global_pos.weight.data = token_emb, pos_emb
        model.shift_global = False
        with torch.no_grad():
            return model.global_inputs(ids, 0, ids.shape[1] // patch_size)

    cases = []
    for seed, (B, T, P, D) in enumerate([(1, 8, 4, 8), (2, 12, 2, 6), (3, 16, 8, 4), (1, 5, 1, 12)]):
        g = torch.Generator().manual_seed(seed)
        cases.append((_ids(seed, B, T), torch.randn(V, D, generator=g), torch.randn(2 * T, D, generator=g), P))
    return run_check(
        "patch_embed",
        lambda *case: _tensor_result(patch_embed(*case)),
        reference,
        cases,
        hint="h = token_emb[ids] + pos_emb[:T] gives (B, T, D_G); then h.reshape(B, T // P, P * D_G) puts the P "
        "embeddings of each patch side by side",
        describe=lambda c: f"ids {tuple(c[0].shape)}, D_G = {c[1].shape[1]}, P = {c[3]}",
    )


def check_global_shift(global_shift: Callable) -> bool:
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
    return run_check(
        "global_shift",
        lambda h, pad, expected: _tensor_result(global_shift(h, pad)),
        lambda h, pad, expected: expected,
        cases,
        hint="drop the last patch and put the pad in front: torch.cat([pad.expand(B, 1, -1), h[:, :-1]], dim=1)",
        describe=lambda c: f"h {tuple(c[0].shape)}",
    )


def check_local_input(local_input: Callable) -> bool:
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
    return run_check(
        "local_input",
        lambda *case: _tensor_result(local_input(*case)),
        reference,
        cases,
        hint="slot p adds the embedding of byte p - 1 of its patch: prev = local_emb[patches[:, :-1]], "
        "then torch.cat([pad.expand(N, 1, -1), prev], dim=1) and add the slices",
        describe=lambda c: f"slices {tuple(c[0].shape)}, patches {tuple(c[1].shape)}",
    )


def _generation_counts(n_prompt: int, n_new: int, patch_size: int) -> tuple[int, int]:
    model = _model(patch_size, max_patches=-(-(n_prompt + n_new) // patch_size) + 1)
    model.generate(_ids(n_prompt, 1, n_prompt)[0].tolist(), n_new)
    return model.stats.global_calls, model.stats.global_patches


def check_count_global_calls(count_global_calls: Callable[[int, int, int], tuple[int, int]]) -> bool:
    """count_global_calls(n_prompt, n_new, patch_size) -> (global calls, patch positions computed)."""

    def student(n_prompt, n_new, patch_size):
        result = count_global_calls(n_prompt, n_new, patch_size)
        if not isinstance(result, tuple) or len(result) != 2:
            raise CheckFailed("count_global_calls must return a tuple (global_calls, global_patches)")
        return tuple(int(r) for r in result)

    cases = [(1, 8, 4), (4, 4, 4), (13, 30, 8), (8, 1, 8), (3, 9, 1), (5, 0, 4), (0, 10, 4), (9, 7, 4)]
    return run_check(
        "count_global_calls",
        student,
        _generation_counts,
        cases,
        hint="one call when generation starts (it covers every prompt patch and the patch of the first new "
        "byte), then one call for each later new byte t that starts a patch (t % P == 0); the patches "
        "computed are all those the final sequence touches, ceil((n_prompt + n_new) / P), when n_new > 0",
        describe=lambda c: f"n_prompt={c[0]}, n_new={c[1]}, P={c[2]}",
    )


def check_loss_by_slot(loss_by_slot: Callable[[torch.Tensor, int], torch.Tensor]) -> bool:
    """loss_by_slot(nll, patch_size) -> (P,): mean of nll (B, T) over the positions t with t % P == p."""
    g = torch.Generator().manual_seed(0)
    cases = [(torch.rand(2, 16, generator=g, dtype=torch.float64), 4), (torch.rand(3, 24, generator=g), 8),
             (torch.rand(1, 6, generator=g, dtype=torch.float64), 1), (torch.rand(4, 10, generator=g), 2)]  # fmt: skip
    return run_check(
        "loss_by_slot",
        lambda *case: _tensor_result(loss_by_slot(*case)),
        lambda nll, P: nll.reshape(nll.shape[0], -1, P).mean(dim=(0, 1)),
        cases,
        hint="view nll (B, T) as (B, T // P, P): the last dim is the slot; average over the first two dims",
        describe=lambda c: f"nll {tuple(c[0].shape)}, P={c[1]}",
    )
