import json

import pytest
import torch

from minillm.pretrained import checkpoint_info, list_pretrained, load_pretrained, save_checkpoint


def test_save_then_load_gives_the_same_model(small_model, tmp_path):
    save_checkpoint(small_model.float(), "toy", {"note": "test"}, tmp_path)
    assert list_pretrained(tmp_path) == ["toy"]
    loaded = load_pretrained("toy", tmp_path)
    assert not loaded.training
    ids = torch.randint(0, 256, (1, 12))
    torch.testing.assert_close(loaded(ids).logits, small_model(ids).logits)
    assert loaded.head.weight is loaded.embed.weight
    assert checkpoint_info("toy", tmp_path)["note"] == "test"


def test_missing_checkpoint_names_what_is_available(small_model, tmp_path):
    save_checkpoint(small_model.float(), "toy", {}, tmp_path)
    with pytest.raises(FileNotFoundError, match=r"no checkpoint named 'nope'.*available: toy"):
        load_pretrained("nope", tmp_path)
    (tmp_path / "toy.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="is missing; rebuild it"):
        load_pretrained("toy", tmp_path)


def test_a_flipped_byte_is_detected_as_corruption(small_model, tmp_path):
    save_checkpoint(small_model.float(), "toy", {}, tmp_path)
    path = tmp_path / "toy.safetensors"
    raw = bytearray(path.read_bytes())
    raw[-10] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="is corrupt: its sha256 differs"):
        load_pretrained("toy", tmp_path)


def test_a_file_that_is_not_a_checkpoint_is_rejected(small_model, tmp_path):
    save_checkpoint(small_model.float(), "toy", {}, tmp_path)
    path = tmp_path / "toy.safetensors"
    path.write_bytes(b"this is not a checkpoint")
    meta = json.loads((tmp_path / "toy.json").read_text())
    import hashlib

    meta["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()  # a consistent but bogus pair
    (tmp_path / "toy.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        load_pretrained("toy", tmp_path)


def test_shapes_are_checked_against_the_config(small_model, tmp_path):
    save_checkpoint(small_model.float(), "toy", {}, tmp_path)
    meta = json.loads((tmp_path / "toy.json").read_text())
    meta["config"]["d_model"] = 64
    (tmp_path / "toy.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="does not match its config"):
        load_pretrained("toy", tmp_path)


def test_broken_json_and_bad_name_type(small_model, tmp_path):
    save_checkpoint(small_model.float(), "toy", {}, tmp_path)
    (tmp_path / "toy.json").write_text("{not json")
    with pytest.raises(ValueError, match="is not valid json"):
        load_pretrained("toy", tmp_path)
    with pytest.raises(TypeError, match="name must be a str"):
        load_pretrained(3, tmp_path)


def test_a_megabyte_checkpoint_round_trips_with_its_tied_head(tmp_path):
    from minillm.megabyte import Megabyte, MegabyteConfig

    torch.manual_seed(0)
    model = Megabyte(MegabyteConfig()).eval()
    save_checkpoint(model, "mb", {}, tmp_path)
    assert checkpoint_info("mb", tmp_path)["architecture"] == "Megabyte"
    loaded = load_pretrained("mb", tmp_path)
    ids = torch.randint(0, 256, (1, 24))
    torch.testing.assert_close(loaded(ids), model(ids))
    assert loaded.head.weight is loaded.local_embed.weight


def test_an_unknown_architecture_is_rejected(small_model, tmp_path):
    save_checkpoint(small_model.float(), "toy", {}, tmp_path)
    meta = json.loads((tmp_path / "toy.json").read_text())
    meta["architecture"] = "GPT5"
    (tmp_path / "toy.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="unknown architecture 'GPT5'"):
        load_pretrained("toy", tmp_path)


def test_listing_a_folder_that_does_not_exist_is_an_error_not_none(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"directory {tmp_path / 'nowhere'} does not exist"):
        list_pretrained(tmp_path / "nowhere")


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        ([1, 2], "must hold a json object"),
        ({"config": {}}, "field 'sha256' must be a str, got missing"),
        ({"sha256": "ab", "config": [1]}, "field 'config' must be a dict, got a list"),
    ],
)
def test_a_checkpoint_json_of_the_wrong_shape_names_the_file_and_the_field(tmp_path, meta, message):
    (tmp_path / "bad.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=message) as raised:
        checkpoint_info("bad", tmp_path)
    assert str(tmp_path / "bad.json") in str(raised.value)
