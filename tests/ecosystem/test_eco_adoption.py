"""Adoption measures on small synthetic stores where every number can be checked by hand."""

from __future__ import annotations

import pandas as pd
import pytest
from eco_hub_fake import hub_model
from eco_snapshots import write_snapshot

from monoculture.ecosystem import adoption
from monoculture.ecosystem.importers import import_paths
from monoculture.ecosystem.registry import load_registry
from monoculture.errors import UserError
from monoculture.store import Store


def test_size_classes_cover_every_size():
    assert [adoption.size_class(x) for x in (0.5, 1.5, 5.5, 7.6, 9.9, 14, 72, 123, 671)] == [
        "<1B",
        "1-5B",
        "1-5B",
        "7-9B",
        "7-9B",
        "10-50B",
        "50-100B",
        "100-250B",
        "250B+",
    ]
    assert adoption.size_class(None) is None and adoption.size_class(float("nan")) is None


def _history(n_models: int, *, ages=(30, 90), rate=lambda i: 1000 * (i + 1)) -> pd.DataFrame:
    rows = []
    created = pd.Timestamp("2025-01-01")
    for i in range(n_models):
        for age in ages:
            rows.append(
                {
                    "model_id": f"org/m{i}",
                    "created_at": created,
                    "created_floor": False,
                    "taken_at": created + pd.Timedelta(days=age),
                    "downloads_all_time": rate(i) * age,
                    "params": 7_000_000_000,
                }
            )
    return pd.DataFrame(rows)


def test_relative_adoption_against_the_tenth_ranked_peer():
    h = _history(12)
    rel = adoption.relative_adoption(h).set_index("model_id")
    # at 90 days model i has 1000*(i+1)*90; the 10th largest of 12 is m2 (3000*90)
    assert (rel["status"] == "ok").all()
    assert rel.loc["org/m11", "reference_model"] == "org/m2"
    assert rel.loc["org/m11", "ratio"] == pytest.approx(12 / 3)
    assert rel.loc["org/m2", "ratio"] == pytest.approx(1.0)


def test_relative_adoption_interpolates_but_never_extrapolates():
    h = _history(12)
    young = pd.DataFrame(
        [
            {
                "model_id": "org/new",
                "created_at": pd.Timestamp("2025-03-01"),
                "created_floor": False,
                "taken_at": pd.Timestamp("2025-03-01") + pd.Timedelta(days=60),
                "downloads_all_time": 600_000,
                "params": 8e9,
            }
        ]
    )
    rel = adoption.relative_adoption(pd.concat([h, young])).set_index("model_id")
    # at 60 days each peer is interpolated between its 30- and 90-day observations: m_i has 1000*(i+1)*60;
    # ranked with the model itself, the 10th of 13 is m3 (240,000)
    assert rel.loc["org/new", "reference_model"] == "org/m3"
    assert rel.loc["org/new", "reference_downloads"] == pytest.approx(4000 * 60)
    assert rel.loc["org/new", "ratio"] == pytest.approx(600_000 / 240_000)
    old = pd.DataFrame(
        [
            {
                "model_id": "org/old",
                "created_at": pd.Timestamp("2024-01-01"),
                "created_floor": False,
                "taken_at": pd.Timestamp("2025-01-01"),
                "downloads_all_time": 5,
                "params": 7e9,
            }
        ]
    )
    rel = adoption.relative_adoption(pd.concat([h, old])).set_index("model_id")
    assert rel.loc["org/old", "status"].startswith("insufficient history") and pd.isna(rel.loc["org/old", "ratio"])


def test_derivative_origins_split_merges_and_follow_chains(tmp_path, qwen_models, registry):
    with Store(tmp_path / "e.duckdb") as st:
        import_paths(st.con, [write_snapshot(tmp_path / "s.json", qwen_models)], registry)
        o = adoption.derivative_origins(st.con, registry)
        fa = adoption.family_adoption(st.con, registry).set_index("family")
    by_model = o.groupby("model_id")["weight"].sum()
    assert (by_model == 1.0).all() and len(by_model) == 6
    assert set(o.loc[o["model_id"] == "bob/qwen-ft-ft", "origin"]) == {"qwen"}  # a fine-tune of a fine-tune of Qwen is Qwen's
    erin = o[o["model_id"] == "erin/merge"].set_index("origin")["weight"]
    assert erin.to_dict() == {"llama": 0.5, "qwen": 0.5}
    tot = adoption.origin_share_total(o).set_index("country")["share"]
    assert tot["China"] == pytest.approx(5.5 / 6) and tot["United States"] == pytest.approx(0.5 / 6)
    months = adoption.origin_share_by_month(o)
    assert months.groupby("month")["share"].sum().round(12).eq(1).all()
    assert fa.loc["qwen", "derivatives_transitive"] == 6 and fa.loc["qwen", "derivatives_direct"] == 5
    assert fa.loc["qwen", "downloads_30d"] == sum(m["downloads"] for m in qwen_models if m["id"].startswith("Qwen/"))


def test_shares_over_time_from_two_snapshots(tmp_path, qwen_models, registry):
    later = [dict(m, downloads=m["downloads"] * (3 if m["id"].startswith("Qwen/Qwen3") else 1)) for m in qwen_models]
    llama = [hub_model("meta-llama/Llama-3.1-8B", downloads=20_000)]
    with Store(tmp_path / "e.duckdb") as st:
        import_paths(
            st.con,
            [
                write_snapshot(tmp_path / "a.json", qwen_models + llama, "2025-01-01T00:00:00Z", "a"),
                write_snapshot(tmp_path / "b.json", later + llama, "2025-02-01T00:00:00Z", "b"),
            ],
            registry,
        )
        sot = adoption.shares_over_time(st.con, registry)
    assert list(sot["snapshot_id"].unique()) == ["a", "b"]
    assert sot.groupby("snapshot_id")["share_downloads_30d"].sum().round(12).eq(1).all()
    q = sot[sot["family"] == "qwen"].set_index("snapshot_id")["share_downloads_30d"]
    assert q["b"] > q["a"]


def test_user_registry_extends_and_overrides(tmp_path):
    f = tmp_path / "reg.yaml"
    f.write_text("""
families:
  qwen:
    country: Singapore
  acme:
    name: Acme
    organisations: [acme-ai]
    country: Atlantis
    flagships:
      - {name: Acme-1, date: 2024-01-01, licence: apache-2.0}
      - {name: Acme-2, date: 2024-06-01, licence: acme-special-licence}
      - {name: Acme-3, date: 2025-01-01, access: api}
licences:
  non-commercial: [acme-special-licence]
""")
    reg = load_registry(f)
    assert reg.get("qwen").country == "Singapore" and reg.get("qwen").organisations == ("Qwen",)
    acme = reg.get("acme")
    assert [x.level for x in acme.flagships] == [0, 2, 4]
    assert reg.family_of_repo("acme-ai/whatever").key == "acme"
    bad = tmp_path / "bad.yaml"
    bad.write_text("families:\n  x: {name: X}\n")
    with pytest.raises(UserError, match="organisation"):
        load_registry(bad)
    with pytest.raises(UserError, match="unknown family"):
        reg.select("nope")


@pytest.mark.parametrize("date", ["''", "null"])
def test_flagship_with_an_empty_date_is_a_user_error(tmp_path, date):
    # An empty date used to become None and crash sorting the flagships (TypeError) later on.
    f = tmp_path / "reg.yaml"
    f.write_text(
        "families:\n  acme:\n    organisations: [acme-ai]\n    flagships:\n"
        f"      - {{name: Acme-1, date: 2024-01-01}}\n      - {{name: Acme-2, date: {date}}}\n"
    )
    with pytest.raises(UserError, match=r"flagships\[1\].*needs a date"):
        load_registry(f)
