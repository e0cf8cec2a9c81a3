"""The chunk-size sweep at a toy size: every size measured, ratios against the default's."""

from __future__ import annotations

import pytest

from mixerlab.bench.chunk_sizes import ChunkSweep, chunk_table, chunked_mixers, sweep_chunk_sizes
from mixerlab.errors import ConfigError


def test_sweep_measures_every_size_against_the_default():
    cfg = ChunkSweep(
        mixers=["gla", "mingru"], sizes=[4, 8], seq_len=16, batch_size=1, dim=16, num_heads=2, rounds=1
    )
    rows = sweep_chunk_sizes(cfg, log=lambda _: None)
    # gla's default (64) and mingru's (256) are added to the sizes asked for
    assert {(r["mixer"], r["chunk_size"]) for r in rows} == {
        ("gla", 4),
        ("gla", 8),
        ("gla", 64),
        ("mingru", 4),
        ("mingru", 8),
        ("mingru", 256),
    }
    for r in rows:
        default = next(d for d in rows if d["mixer"] == r["mixer"] and d["default"])
        assert r["fwdbwd_tok_s"] > 0
        assert r["vs_default"] == pytest.approx(r["fwdbwd_tok_s"] / default["fwdbwd_tok_s"])
    assert [r["chunk_size"] for r in rows if r["default"]] == [64, 256]
    table = chunk_table(rows, [4, 8, 64, 256])
    assert table[1][0] == "gla" and table[1][1] == "64" and table[1][-3] == "–"  # no C=256 row for gla


def test_only_chunked_mixers_are_accepted():
    assert "gla" in chunked_mixers() and "attention" not in chunked_mixers()
    with pytest.raises(ConfigError, match="mixers='attention'"):
        sweep_chunk_sizes(ChunkSweep(mixers=["attention"]))
