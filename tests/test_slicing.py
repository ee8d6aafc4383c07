"""Chunks of payloads (laqcore.distributed.slicing): decoding a chunk is decoding the whole
payload and slicing the result, bit for bit, for every sliceable kind."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from laqcore import get_compressor, laq_dequantize, laq_quantize
from laqcore.distributed.slicing import slice_payload, slice_unit
from laqcore.distributed.two_phase import chunk_bounds

N = 203  # ragged: no unit divides it


def _cases() -> list[tuple[str, Any, Any]]:
    g = np.random.default_rng(5).standard_normal(N).astype(np.float32)
    qsgd = get_compressor("qsgd", levels=7, bucket_size=16, seed=1)
    tern = get_compressor("terngrad", seed=1)
    dense = get_compressor("none")
    return [
        ("dense", dense.compress(g), dense.decompress),
        ("laq-blocks", laq_quantize(g, None, 3, 16), laq_dequantize),
        ("laq-global", laq_quantize(g, None, 3), laq_dequantize),
        ("qsgd", qsgd.compress(g, step=0), qsgd.decompress),
        ("terngrad", tern.compress(g, step=0), tern.decompress),
    ]


@pytest.mark.parametrize("world", [1, 2, 3, 5])
def test_chunks_decode_to_the_slices_of_the_whole(world: int) -> None:
    for name, payload, decode in _cases():
        whole = decode(payload)
        unit = slice_unit(payload)
        for s, e in chunk_bounds(N, world, unit):
            if s == e:
                continue
            part = slice_payload(payload, s, e)
            assert part.n == e - s, name
            got = decode(type(part).from_bytes(part.to_bytes(), expected_n=e - s))
            assert got.tobytes() == whole[s:e].tobytes(), (name, s, e)


def test_units_and_bad_slices() -> None:
    units = {name: slice_unit(p) for name, p, _ in _cases()}
    # blocks of 16; 3-bit codes fill bytes every 8; QSGD (4-bit codes) buckets of 16; 2-bit: 4
    assert units == {"dense": 1, "laq-blocks": 16, "laq-global": 8, "qsgd": 16, "terngrad": 4}
    p = _cases()[1][1]
    for s, e in ((0, 0), (8, 32), (16, N + 1), (-16, 16), (0, 20)):
        with pytest.raises(ValueError, match="cannot slice"):
            slice_payload(p, s, e)
    sparse = get_compressor("topk", ratio=0.5).compress(np.ones(4, np.float32))
    with pytest.raises(TypeError, match="cannot be split"):
        slice_unit(sparse)
