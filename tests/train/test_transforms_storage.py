"""The packed file: bit packing round trips, tied weights stored once, and a clear error for a
file it did not write."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from mixerlab.errors import ConfigError
from mixerlab.train.transforms import compressed_bytes, load_compressed, save_compressed
from mixerlab.train.transforms.storage import pack_bits, pack_trits, unpack_bits, unpack_trits


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_bits_pack_into_bytes_and_back(bits):
    codes = torch.randint(0, 2**bits, (37,))
    packed = pack_bits(codes, bits)
    assert packed.dtype == torch.uint8 and packed.numel() == -(-37 * bits // 8)
    assert torch.equal(unpack_bits(packed, bits, 37), codes.to(torch.int32))


def test_ternary_values_pack_five_to_a_byte_and_back():
    trits = torch.randint(-1, 2, (101,))
    packed = pack_trits(trits)
    assert packed.numel() == 21
    assert torch.equal(unpack_trits(packed, 101), trits.to(torch.int32))


def test_a_float_model_round_trips_and_tied_weights_are_stored_once(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(50, 64), nn.Linear(64, 50, bias=False))
    model[1].weight = model[0].weight
    size = save_compressed(model, tmp_path / "m.pt")
    assert size == compressed_bytes(model) and 50 * 64 * 4 <= size < 50 * 64 * 4 + 2048
    fresh = nn.Sequential(nn.Embedding(50, 64), nn.Linear(64, 50, bias=False))
    fresh[1].weight = fresh[0].weight
    load_compressed(tmp_path / "m.pt", fresh)
    assert torch.equal(fresh[0].weight, model[0].weight) and fresh[1].weight is fresh[0].weight


def test_a_file_it_did_not_write_is_a_clear_error(tmp_path):
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(ConfigError, match="save_compressed"):
        load_compressed(tmp_path / "other.pt", nn.Linear(2, 2))
    buffer = io.BytesIO()
    save_compressed(nn.Linear(2, 2), buffer)
    with pytest.raises(RuntimeError):  # another structure: load_state_dict names the keys
        load_compressed(buffer, nn.Linear(3, 2))
