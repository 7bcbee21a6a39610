"""Parquet shards and their merge into the store: no Ray needed, so these run in a second."""

from __future__ import annotations

import pyarrow.parquet as pq

from monoculture.executors.shards import merge_pending, merge_shard, pending_shards, read_shard, shards_dir_for, write_shard
from monoculture.store import Store


def _row(key: str, text: str | None, error: str | None = None) -> dict:
    return {
        "key": key,
        "model": "m",
        "prompt_key": "p" + key,
        "sample_index": 0,
        "text": text,
        "finish_reason": "stop" if text else None,
        "prompt_tokens": 3,
        "completion_tokens": 2 if text else None,
        "latency_s": None,
        "error": error,
        "n_mode": "single",
        "logprobs": {"A": -0.1} if text else None,
        "params": {"sampling": {"seed": 1}, "meta": {"executor": "ray"}},
        "source": "run",
        "attempts": 1,
    }


def _table(store: Store) -> list[tuple]:
    return store.con.execute("SELECT key, text, error, attempts, logprobs FROM generations ORDER BY key").fetchall()


def test_shard_round_trip_and_folder(tmp_path):
    rows = [_row("a", "hello"), _row("b", None, "HTTP 500")]
    shard = write_shard(tmp_path / "sh", rows)
    assert shard is not None and shard.name.endswith(".parquet")
    assert write_shard(tmp_path / "sh", []) is None
    back = read_shard(shard)
    assert [(r["key"], r["text"], r["error"], r["logprobs"]) for r in back] == [
        ("a", "hello", None, {"A": -0.1}),
        ("b", None, "HTTP 500", None),
    ]
    assert back[0]["params"] == rows[0]["params"]
    assert pq.read_table(shard).num_rows == 2
    assert not [p for p in (tmp_path / "sh").iterdir() if p.name.startswith(".")]  # no temporary left
    assert shards_dir_for(tmp_path / "x.duckdb") == tmp_path / "x.duckdb.shards"
    assert shards_dir_for(tmp_path / "x.duckdb", tmp_path / "elsewhere") == tmp_path / "elsewhere"


def test_merge_twice_adds_nothing_and_never_downgrades(tmp_path):
    folder = tmp_path / "sh"
    first = write_shard(folder, [_row("a", "hello"), _row("b", None, "HTTP 500")])
    with Store(tmp_path / "s.duckdb") as st:
        assert merge_shard(st, first) == 2
        before = _table(st)
        assert not pending_shards(folder)  # renamed once merged
        # The same file merged again (a crash between commit and rename, a copied folder): nothing.
        merged = folder / (first.name + ".merged")
        merged.rename(first)
        assert merge_shard(st, first) == 0
        assert _table(st) == before
        # A later shard that says "a" failed cannot undo its answer; "b" gets its retry.
        second = write_shard(folder, [_row("a", None, "HTTP 500"), _row("b", "world")])
        assert merge_pending(st, folder) == (1, 1)
        got = {k: (t, e, n) for k, t, e, n, _ in _table(st)}
        assert got == {"a": ("hello", None, 1), "b": ("world", None, 2)}
        assert st.con.execute("SELECT count(*) FROM merged_shards").fetchone()[0] == 2
        assert second.with_name(second.name + ".merged").exists()
