"""Chapter 06's checkers pass the package's functions, fail wrong ones, and report stubs."""

import pytest
import torch

from minillm.checks import ch06
from minillm.megabyte import Megabyte, MegabyteConfig
from minillm.megabyte_pictures import patch_layout


def package_patch_embed(ids, token_emb, pos_emb, patch_size):
    """Megabyte.global_inputs with the shift off, on a model carrying these embeddings."""
    config = MegabyteConfig(patch_size=patch_size, d_global=token_emb.shape[1], n_global_heads=1,
                            max_patches=len(pos_emb) // patch_size)  # fmt: skip
    model = Megabyte(config)
    model.global_embed.weight.data, model.global_pos.weight.data = token_emb, pos_emb
    model.shift_global = False
    with torch.no_grad():
        return model.global_inputs(ids, 0, ids.shape[1] // patch_size)


def package_global_shift(h, pad):
    """shjwudp/megabyte's way: F.pad one patch in front, drop the last, then write the pad there."""
    out = torch.nn.functional.pad(h, (0, 0, 1, -1))
    out[:, 0] = pad
    return out


def package_local_input(slices, patches, local_emb, pad):
    config = MegabyteConfig(patch_size=patches.shape[1], d_local=local_emb.shape[1], n_local_heads=1)
    model = Megabyte(config)
    model.local_embed.weight.data, model.local_pad.data = local_emb, pad
    with torch.no_grad():
        return model.local_inputs(slices, patches[:, :-1], first=True)


def package_count_global_calls(n_prompt, n_new, patch_size):
    torch.manual_seed(0)
    model = Megabyte(MegabyteConfig(patch_size=patch_size, max_patches=(n_prompt + n_new) // patch_size + 1))
    model.generate([65] * n_prompt, n_new)
    return model.stats.global_calls, model.stats.global_patches


def package_loss_by_slot(nll, patch_size):
    slots = torch.arange(nll.shape[1]) % patch_size
    return torch.stack([nll[:, slots == p].mean() for p in range(patch_size)])


def embed_without_positions(ids, token_emb, pos_emb, patch_size):
    B, T = ids.shape
    return token_emb[ids].reshape(B, T // patch_size, -1)


def shifted_the_wrong_way(h, pad):
    return torch.cat([h[:, 1:], pad.expand(h.shape[0], 1, -1)], dim=1)


def local_input_sees_its_own_byte(slices, patches, local_emb, pad):  # the missing one-byte shift
    return slices + local_emb[patches]


def one_call_per_patch_of_new_bytes(n_prompt, n_new, patch_size):  # forgets the call at the start
    return -(-n_new // patch_size), -(-(n_prompt + n_new) // patch_size)


def slots_by_patch(nll, patch_size):  # averages each patch instead of each slot
    return nll.reshape(nll.shape[0], -1, patch_size).mean(dim=(0, 2))[:patch_size]


def package_causal_patches(ids, patch_size, pad_id):  # the rows a real Megabyte's global_inputs read
    model = Megabyte(MegabyteConfig(patch_size=patch_size, max_patches=ids.shape[1] // patch_size))
    reads = patch_layout(model, ids[:1]).global_reads  # byte positions per row, the same for every batch row
    rows = [ids[:, list(r)] if r else torch.full((len(ids), patch_size), pad_id) for r in reads]
    return torch.stack(rows, dim=1)


def split_without_shift(ids, patch_size, pad_id):  # row k holds patch k: the global output sees its own bytes
    return ids.view(ids.shape[0], -1, patch_size)


CASES = [
    (ch06.check_patch_embed, package_patch_embed, embed_without_positions),
    (ch06.check_global_shift, package_global_shift, shifted_the_wrong_way),
    (ch06.check_local_input, package_local_input, local_input_sees_its_own_byte),
    (ch06.check_count_global_calls, package_count_global_calls, one_call_per_patch_of_new_bytes),
    (ch06.check_loss_by_slot, package_loss_by_slot, slots_by_patch),
    (ch06.check_causal_patches, package_causal_patches, split_without_shift),
]


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("check, right, wrong", CASES, ids=lambda f: getattr(f, "__name__", ""))
def test_checker_passes_the_package_function_and_fails_a_wrong_one(check, right, wrong, checker_contract):
    checker_contract.passes_right_fails_wrong(check, right, wrong)


@pytest.mark.parametrize("check", [c[0] for c in CASES], ids=lambda f: f.__name__)
def test_checker_reports_a_stub_as_not_implemented_and_catches_errors(check, checker_contract):
    checker_contract.reports_stubs_and_errors(check, [1.0], "must return a")
