"""Malformed metadata is counted and survives every stage; it never stops a run."""

from __future__ import annotations

import json

import pytest
from eco_hub_fake import hub_model
from eco_snapshots import write_snapshot

from monoculture.ecosystem import adoption
from monoculture.ecosystem.cadence import build_histories
from monoculture.ecosystem.importers import import_paths
from monoculture.ecosystem.lineage import Lineage
from monoculture.ecosystem.quality import Tally
from monoculture.ecosystem.report import build_report
from monoculture.ecosystem.signals import alerts_table
from monoculture.ecosystem.snapshots import normalize_model
from monoculture.errors import UserError
from monoculture.store import Store


def bad_models() -> list:
    good = hub_model("Qwen/Qwen2.5-7B", downloads=100)
    return [
        good,
        {
            "id": "Qwen/Qwen-floor",
            "createdAt": "2022-03-02T23:29:04.000Z",
            "tags": ["license:apache-2.0"],
        },  # the Hub's floor date
        {"id": "Qwen/Qwen-baddate", "createdAt": "last tuesday", "tags": []},
        {"id": "Qwen/Qwen-future", "createdAt": "2099-01-01T00:00:00Z", "tags": []},
        {"id": "Qwen/Qwen-ancient", "createdAt": "1970-01-02T00:00:00Z"},
        {"id": "Qwen/Qwen-nodate", "downloads": "lots", "likes": -3},
        {
            "id": "Qwen/Qwen-weird",
            "createdAt": "2024-01-01",
            "tags": "not-a-list",
            "cardData": "license: [unclosed",
            "gated": "manual",
            "safetensors": {"parameters": {"BF16": "x"}},
        },
        {
            "id": "Qwen/Qwen-oddlicence",
            "createdAt": "2024-02-01T00:00:00Z",
            "tags": ["license:wtfpl-but-worse"],
            "cardData": {"license": "wtfpl-but-worse"},
        },
        {"id": "Qwen/Qwen-other", "createdAt": "2024-03-01T00:00:00Z", "tags": ["license:other"]},
        # base-model links that form a cycle, and a self-link
        {"id": "x/a", "createdAt": "2024-05-01T00:00:00Z", "tags": ["base_model:finetune:x/b"]},
        {"id": "x/b", "createdAt": "2024-05-02T00:00:00Z", "tags": ["base_model:finetune:x/a"]},
        {"id": "x/c", "createdAt": "2024-05-03T00:00:00Z", "tags": ["base_model:finetune:x/c", "base_model:finetune:x/b"]},
        {"id": "x/d", "createdAt": "2024-05-04T00:00:00Z", "tags": ["base_model:x/c"]},  # untyped link
        {"modelId": ""},  # no usable id
        "not even an object",
        None,
        good,  # the same model twice
    ]


def test_normalize_counts_each_kind():
    t = Tally()
    rows = [normalize_model(m, t, taken_at=None) for m in bad_models()]
    kept = [r for r, _ in rows if r is not None]
    assert len(kept) == 14
    c = t.counts
    assert c["floor_date"] == 1 and c["bad_date"] == 1 and c["implausible_date"] == 1
    assert c["bad_number"] >= 3  # downloads "lots", likes -3, parameters "x"
    assert c["bad_type"] >= 4  # tags not a list, card not YAML, a string record, None
    assert c["bad_model_id"] == 1 and c["self_loop"] == 1
    floor = next(r for r, _ in rows if r and r["model_id"] == "Qwen/Qwen-floor")
    assert floor["created_floor"] is True
    d_links = next(links for r, links in rows if r and r["model_id"] == "x/d")
    assert d_links == [("x/c", "unspecified", "tag")]


def test_cycles_are_broken_deterministically():
    t = Tally()
    g = Lineage.from_edges(
        [("x/a", "x/b", "finetune"), ("x/b", "x/a", "finetune"), ("x/c", "x/b", "finetune"), ("x/c", "x/c", "merge")], t
    )
    assert t.counts["cycle"] == 1 and t.counts["self_loop"] == 1
    assert len(g.broken) == 1
    # every walk terminates, and the same link is dropped on every run
    again = Lineage.from_edges([("x/b", "x/a", "finetune"), ("x/c", "x/b", "finetune"), ("x/a", "x/b", "finetune")])
    assert again.broken == g.broken
    assert g.descendants(["x/a"]) or g.descendants(["x/b"])
    assert g.ancestors("x/c") <= {"x/a", "x/b"}


def test_the_whole_pipeline_survives_bad_metadata(tmp_path, registry):
    snap = write_snapshot(tmp_path / "bad.json", bad_models(), taken_at="2025-01-01T00:00:00Z")
    (tmp_path / "broken.json").write_text("{ not json")
    store = tmp_path / "eco.duckdb"
    with Store(store) as st:
        res = import_paths(st.con, [snap], registry)
        assert res[0].rows == 14
        assert res[0].tally.counts["duplicate"] == 1
        iss = dict(st.con.execute("SELECT kind, sum(count) FROM eco_issues GROUP BY kind").fetchall())
        assert iss["floor_date"] == 1 and iss["bad_date"] == 1 and iss["implausible_date"] == 2  # 2099 (after taken_at) and 1970
        with pytest.raises(UserError, match="not valid JSON"):
            import_paths(st.con, [tmp_path / "broken.json"], registry, kind="snapshot")
        t = Tally()
        hist = build_histories(st.con, registry, registry.select("qwen"), tally=t)
        assert t.counts["unknown_licence"] >= 2  # "wtfpl-but-worse" and "other"
        names = {r.name for r in hist[0].releases if r.source == "hub"}
        assert "Qwen/Qwen-floor" not in names and "Qwen/Qwen-baddate" not in names  # no usable release date
        assert "Qwen/Qwen-weird" in names
        assert len(alerts_table(hist, min_strength="n/a")) == 4
        lin_t = Tally()
        lin = adoption.build_lineage(st.con, lin_t)
        assert lin_t.counts["cycle"] == 1 and not lin.broken == []
        out, data = build_report(st.con, registry, tmp_path / "r.html")
        assert out.exists() and any(r["kind"] == "cycle" for r in data.lineage_issues.rows())


def test_json_list_without_date_gets_an_estimated_one(tmp_path, registry):
    p = tmp_path / "models.json"
    p.write_text(json.dumps([hub_model("Qwen/Qwen2.5-7B", modified="2025-02-03T00:00:00Z")]))
    with Store(tmp_path / "e.duckdb") as st:
        import_paths(st.con, [p], registry)
        taken, note = st.con.execute("SELECT taken_at, note FROM eco_snapshots").fetchone()
    assert str(taken).startswith("2025-02-03") and "estimated" in note
