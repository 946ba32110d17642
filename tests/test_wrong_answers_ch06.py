"""Chapter 06's wrong-answer suite: plausible mistakes for every exercise, each rejected by its checker.

Each exercise has a right answer (the solution notebook's) that its checker must accept, and at
least three wrong ones (wrong axis or order, an ignored argument, a shift the wrong way, off by
one) that it must reject with ❌, not with a crash or ⏳.
"""

from __future__ import annotations

import pytest
import torch

from minillm.checks import ch06


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------------------
# Exercise 1: the patch embedder
# ---------------------------------------------------------------------------------------------


def embed_right(ids, token_emb, pos_emb, patch_size):
    B, T = ids.shape
    h = token_emb[ids] + pos_emb[:T]
    return h.reshape(B, T // patch_size, patch_size * token_emb.shape[1])


def embed_without_positions(ids, token_emb, pos_emb, patch_size):
    B, T = ids.shape
    return token_emb[ids].reshape(B, T // patch_size, -1)


def embed_positions_restart_per_patch(ids, token_emb, pos_emb, patch_size):  # position = slot, not t
    B, T = ids.shape
    h = token_emb[ids] + pos_emb[torch.arange(T) % patch_size]
    return h.reshape(B, T // patch_size, -1)


def embed_interleaved(ids, token_emb, pos_emb, patch_size):  # bytes k, k + K, ... in one patch
    B, T = ids.shape
    h = token_emb[ids] + pos_emb[:T]
    return h.reshape(B, patch_size, T // patch_size, -1).transpose(1, 2).reshape(B, T // patch_size, -1)


def embed_features_major(ids, token_emb, pos_emb, patch_size):  # feature-major inside a patch
    B, T = ids.shape
    h = token_emb[ids] + pos_emb[:T]
    return h.reshape(B, T // patch_size, patch_size, -1).transpose(2, 3).reshape(B, T // patch_size, -1)


def embed_hard_coded_patch(ids, token_emb, pos_emb, patch_size):  # P = 4 whatever is passed
    return embed_right(ids, token_emb, pos_emb, 4)


def embed_last_positions(ids, token_emb, pos_emb, patch_size):  # the table's last T rows
    B, T = ids.shape
    return (token_emb[ids] + pos_emb[-T:]).reshape(B, T // patch_size, -1)


# ---------------------------------------------------------------------------------------------
# Exercise 2: the global shift
# ---------------------------------------------------------------------------------------------


def shift_right(h, pad):
    return torch.cat([pad.expand(h.shape[0], 1, -1), h[:, :-1]], dim=1)


def shift_the_wrong_way(h, pad):
    return torch.cat([h[:, 1:], pad.expand(h.shape[0], 1, -1)], dim=1)


def shift_zero_pad(h, pad):  # zeros instead of the learned pad
    return torch.cat([torch.zeros_like(h[:, :1]), h[:, :-1]], dim=1)


def shift_roll(h, pad):  # the last patch wraps around to position 0
    return torch.roll(h, 1, dims=1)


def shift_no_shift(h, pad):
    return h


def shift_pad_added(h, pad):  # adds the pad to every position instead of inserting it
    return h + pad


def shift_along_batch(h, pad):  # shifts the batch axis
    return torch.cat([pad.expand(1, h.shape[1], -1), h[:-1]], dim=0)


# ---------------------------------------------------------------------------------------------
# Exercise 3: the local input
# ---------------------------------------------------------------------------------------------


def local_right(slices, patches, local_emb, pad):
    prev = local_emb[patches[:, :-1]]
    return slices + torch.cat([pad.expand(len(patches), 1, -1), prev], dim=1)


def local_own_byte(slices, patches, local_emb, pad):  # slot p reads byte p: no shift
    return slices + local_emb[patches]


def local_pad_at_the_end(slices, patches, local_emb, pad):  # shifted the wrong way
    return slices + torch.cat([local_emb[patches[:, 1:]], pad.expand(len(patches), 1, -1)], dim=1)


def local_shift_across_patches(slices, patches, local_emb, pad):  # slot 0 reads the previous patch's last byte
    flat = patches.flatten()
    prev = torch.cat([torch.zeros(1, dtype=flat.dtype), flat[:-1]]).reshape(patches.shape)
    out = slices + local_emb[prev]
    out[0, 0] = slices[0, 0] + pad
    return out


def local_forgets_slices(slices, patches, local_emb, pad):
    return torch.cat([pad.expand(len(patches), 1, -1), local_emb[patches[:, :-1]]], dim=1)


def local_no_pad(slices, patches, local_emb, pad):  # slot 0 gets nothing added
    return slices + torch.cat([torch.zeros_like(slices[:, :1]), local_emb[patches[:, :-1]]], dim=1)


# ---------------------------------------------------------------------------------------------
# Exercise 4: the global model's calls in generation
# ---------------------------------------------------------------------------------------------


def calls_right(n_prompt, n_new, patch_size):
    if n_new == 0:
        return 0, 0
    later = sum(1 for t in range(n_prompt + 1, n_prompt + n_new) if t % patch_size == 0)
    return 1 + later, -(-(n_prompt + n_new) // patch_size)


def calls_forgets_the_start(n_prompt, n_new, patch_size):
    return -(-n_new // patch_size), -(-(n_prompt + n_new) // patch_size)


def calls_counts_the_first_byte_twice(n_prompt, n_new, patch_size):  # t = n_prompt counted as a later call
    if n_new == 0:
        return 0, 0
    later = sum(1 for t in range(n_prompt, n_prompt + n_new) if t % patch_size == 0)
    return 1 + later, -(-(n_prompt + n_new) // patch_size)


def calls_floor_patches(n_prompt, n_new, patch_size):  # a partial last patch is not counted
    if n_new == 0:
        return 0, 0
    later = sum(1 for t in range(n_prompt + 1, n_prompt + n_new) if t % patch_size == 0)
    return 1 + later, (n_prompt + n_new) // patch_size


def calls_one_per_byte(n_prompt, n_new, patch_size):  # like a flat model
    return n_new, n_prompt + n_new


def calls_ignores_zero(n_prompt, n_new, patch_size):  # one call even when nothing is generated
    later = sum(1 for t in range(n_prompt + 1, n_prompt + n_new) if t % patch_size == 0)
    return 1 + later, -(-(n_prompt + max(n_new, 1)) // patch_size)


def calls_patches_only_new(n_prompt, n_new, patch_size):  # forgets the prompt's patches in the first call
    if n_new == 0:
        return 0, 0
    later = sum(1 for t in range(n_prompt + 1, n_prompt + n_new) if t % patch_size == 0)
    return 1 + later, 1 + later


def calls_float_patches(n_prompt, n_new, patch_size):  # a float patch count (true division)
    calls, patches = calls_right(n_prompt, n_new, patch_size)
    return calls, float(patches)


# ---------------------------------------------------------------------------------------------
# Exercise 5: loss by slot
# ---------------------------------------------------------------------------------------------


def slots_right(nll, patch_size):
    return nll.reshape(nll.shape[0], -1, patch_size).mean(dim=(0, 1))


def slots_by_patch(nll, patch_size):
    return nll.reshape(nll.shape[0], -1, patch_size).mean(dim=(0, 2))[:patch_size]


def slots_wrong_reshape(nll, patch_size):  # (B, P, K): slot p gets a contiguous run of bytes
    return nll.reshape(nll.shape[0], patch_size, -1).mean(dim=(0, 2))


def slots_first_row(nll, patch_size):  # ignores the batch
    return nll[0].reshape(-1, patch_size).mean(0)


def slots_sum(nll, patch_size):  # sums instead of averaging
    return nll.reshape(nll.shape[0], -1, patch_size).sum(dim=(0, 1))


def slots_first_patch(nll, patch_size):  # the first patch only
    return nll[:, :patch_size].mean(0)


# ---------------------------------------------------------------------------------------------
# Exercise 8: a patch split that never lets a byte see its own patch (a property, not a formula)
# ---------------------------------------------------------------------------------------------


def split_right(ids, patch_size, pad_id):
    B, T = ids.shape
    start = torch.full((B, patch_size), pad_id, dtype=ids.dtype)
    return torch.cat([start, ids[:, :-patch_size]], dim=1).view(B, T // patch_size, patch_size)


def split_no_shift(ids, patch_size, pad_id):  # row k holds patch k itself
    return ids.view(ids.shape[0], -1, patch_size)


def split_byte_shift(ids, patch_size, pad_id):  # the local model's shift: row k keeps P - 1 bytes of patch k
    B, T = ids.shape
    return torch.cat([torch.full((B, 1), pad_id), ids[:, :-1]], dim=1).view(B, T // patch_size, patch_size)


def split_roll(ids, patch_size, pad_id):  # the last patch wraps around into row 0
    return torch.roll(ids, patch_size, dims=1).view(ids.shape[0], -1, patch_size)


def split_zero_pad(ids, patch_size, pad_id):  # pads with byte 0, which reads as a NUL byte
    return split_right(ids, patch_size, 0)


def split_two_patches(ids, patch_size, pad_id):  # safe, but patch k - 1 reaches only the output for k + 1
    B, T = ids.shape
    start = torch.full((B, 2 * patch_size), pad_id, dtype=ids.dtype)
    return torch.cat([start, ids[:, : -2 * patch_size]], dim=1)[:, :T].view(B, T // patch_size, patch_size)


def split_all_pad(ids, patch_size, pad_id):  # never leaks, because it never shows anything
    return torch.full((ids.shape[0], ids.shape[1] // patch_size, patch_size), pad_id)


def split_float(ids, patch_size, pad_id):  # right rows, but floats: not byte ids for an embedding
    return split_right(ids, patch_size, pad_id).float()


def split_first_row_only(ids, patch_size, pad_id):  # batch row 0's split for every row
    return split_right(ids[:1], patch_size, pad_id).expand(len(ids), -1, -1)


EXERCISES = {
    "check_patch_embed": (
        embed_right,
        [
            embed_without_positions,
            embed_positions_restart_per_patch,
            embed_interleaved,
            embed_features_major,
            embed_hard_coded_patch,
            embed_last_positions,
        ],
    ),  # fmt: skip
    "check_global_shift": (
        shift_right,
        [shift_the_wrong_way, shift_zero_pad, shift_roll, shift_no_shift, shift_pad_added, shift_along_batch],
    ),
    "check_local_input": (
        local_right,
        [local_own_byte, local_pad_at_the_end, local_shift_across_patches, local_forgets_slices, local_no_pad],
    ),
    "check_count_global_calls": (
        calls_right,
        [
            calls_forgets_the_start,
            calls_counts_the_first_byte_twice,
            calls_floor_patches,
            calls_one_per_byte,
            calls_ignores_zero,
            calls_patches_only_new,
            calls_float_patches,
        ],
    ),  # fmt: skip
    "check_loss_by_slot": (
        slots_right,
        [slots_by_patch, slots_wrong_reshape, slots_first_row, slots_sum, slots_first_patch],
    ),
    "check_causal_patches": (
        split_right,
        [
            split_no_shift,
            split_byte_shift,
            split_roll,
            split_zero_pad,
            split_two_patches,
            split_all_pad,
            split_float,
            split_first_row_only,
        ],
    ),  # fmt: skip
}
WRONG = [(check, wrong) for check, (_, wrongs) in EXERCISES.items() for wrong in wrongs]


@pytest.mark.parametrize("check", list(EXERCISES))
def test_the_solution_passes(check, checker_contract):
    checker_contract.accepts(getattr(ch06, check), EXERCISES[check][0])


@pytest.mark.parametrize("check, wrong", WRONG, ids=[w.__name__ for _, w in WRONG])
def test_a_wrong_answer_is_rejected(check, wrong, checker_contract):
    checker_contract.rejects(getattr(ch06, check), wrong)


def test_every_exercise_has_three_wrong_answers():
    assert all(len(wrongs) >= 3 for _, wrongs in EXERCISES.values())
