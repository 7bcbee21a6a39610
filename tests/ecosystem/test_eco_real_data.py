"""Checks on the real files in ../shared/data/ecosystem: our numbers against the sources' own columns."""

from __future__ import annotations

import ast
import json
import re

import pandas as pd
import pytest

from monoculture.ecosystem import adoption, databases
from monoculture.ecosystem.lineage import Lineage
from monoculture.store import Store

DUMPS = [
    "DeepSeek-R1_finetunes_20250416_231338",
    "DeepSeek-V3_finetunes_20250422_220003",
    "Mistral-Small-24B-Base-2501_finetunes_20250405_001816",
]
LISTS = {"children": "finetune", "adapters": "adapter", "quantized": "quantized", "merges": "merge"}


def _ids(cell) -> list[str]:
    """The crawler's list cell, parsed independently of the importer."""
    if not isinstance(cell, str) or not cell.strip():
        return []
    items = ast.literal_eval(cell) if cell.strip().startswith("[") else cell.split(",")
    return [i.strip().replace("https://huggingface.co/", "") for i in items if i.strip()]


@pytest.mark.parametrize("stem", DUMPS)
def test_lineage_counts_and_depths_match_the_dump(real_store, stem):
    path, eco, _ = real_store
    raw = pd.read_csv(eco / "model_metadata_analyses" / f"{stem}.csv")
    raw["mid"] = raw["model_id"].str.replace("https://huggingface.co/", "", regex=False)
    with Store(path) as st:
        edges = st.con.execute(
            "SELECT child, parent, relation, origin FROM eco_edges WHERE snapshot_id = ?", [f"lineage-{stem}"]
        ).fetchall()
    lin = Lineage.from_edges((c, p, r) for c, p, r, _ in edges)
    root = raw["mid"].iloc[0]
    assert raw["depth"].iloc[0] == 0

    # direct derivatives by relation == the crawler's *_count columns, for every crawled model
    for row in raw.itertuples(index=False):
        direct = lin.direct(row.mid)
        for col, rel in LISTS.items():
            if f"{col}_count" in raw.columns:
                assert direct.get(rel, 0) == getattr(row, f"{col}_count"), (row.mid, col)

    # depth from the root == the crawler's depth column, for every crawled model
    depths = lin.depths_from(root)
    assert {m: depths.get(m) for m in raw["mid"]} == dict(zip(raw["mid"], raw["depth"]))

    # transitive count from the root == every model the dump lists anywhere below it
    listed = {c for col in LISTS if col in raw.columns for cell in raw[col] for c in _ids(cell)}
    summ = lin.summary([root])
    assert summ["transitive"] == len(listed)
    assert summ["max_depth"] == raw["depth"].max()
    assert summ["direct"] == sum(raw[f"{c}_count"].iloc[0] for c in LISTS if f"{c}_count" in raw.columns)

    # the children's own base_model tags agree with the parents' lists (each tag link is one level deep)
    tag_links = [(c, p) for c, p, r, o in edges if "tag" in o and p in depths and c in depths]
    assert all("dump-list" in o for c, p, r, o in edges if "tag" in o and p in depths and c in depths)
    assert tag_links, "tag-derived links expected"
    for c, p in tag_links:
        assert depths[c] == depths[p] + 1, (c, p)


def test_lineage_dump_malformed_rows_are_counted(real_store):
    path, _, results = real_store
    by = {r.target: r for r in results}
    v3 = by["lineage-DeepSeek-V3_finetunes_20250422_220003"]
    assert v3.tally.counts["missing_metadata"] == 3  # three rows have no metadata (two with URL-shaped ids)
    r1 = by["lineage-DeepSeek-R1_finetunes_20250416_231338"]
    assert r1.tally.counts["missing_field"] == 299  # that crawl kept no createdAt at all


def test_family_derivative_totals(real_store, registry):
    path, _, _ = real_store
    with Store(path) as st:
        fa = adoption.family_adoption(st.con, registry).set_index("family")
    # DeepSeek: R1 (312 fine-tunes + 122 adapters) and V3 (80 + 38 adapters + 21 quantized + 1 merge); no overlap
    assert fa.loc["deepseek", "derivatives_transitive"] == 312 + 122 + 80 + 38 + 21 + 1
    assert fa.loc["deepseek", "transitive_adapter"] == 122 + 38
    assert fa.loc["deepseek", "transitive_quantized"] == 21 and fa.loc["deepseek", "transitive_merge"] == 1
    # Mistral-Small-24B-Base: 78 listed, one of them Mistral's own Instruct checkpoint (not a derivative)
    assert fa.loc["mistral", "derivatives_transitive"] == 77 and fa.loc["mistral", "max_depth"] == 3


def _raw_epoch(eco) -> pd.DataFrame:
    raw = pd.read_csv(eco / "llmfit" / "data" / "large_scale_ai_models.csv")
    raw["open"] = raw["Model accessibility"].fillna("").str.startswith("Open weights")
    raw["lang"] = raw["Domain"].fillna("").str.contains("Language", case=False)
    return raw


def test_epoch_country_shares_rest_on_their_rows(real_store, registry):
    path, eco, _ = real_store
    raw = _raw_epoch(eco)
    with Store(path) as st:
        rel = databases.releases(st.con)
    shares = adoption.epoch_shares(rel, registry, by="country", dataset="llmfit/large_scale_ai_models").set_index("country")
    expected_rows = raw.index[raw["open"] & raw["lang"]]
    assert shares["rows"].sum() == len(expected_rows)
    assert sorted(r for ids in shares["row_ids"] for r in ids) == sorted(expected_rows)
    assert abs(shares["share"].sum() - 1) < 1e-12
    for country, cell in (("China", {"China"}), ("United States", {"United States of America"})):
        rows = shares.loc[country, "row_ids"]
        assert all({c.strip() for c in raw.loc[r, "Country (of organization)"].split(",")} == cell for r in rows)
        independent = raw[
            raw["open"]
            & raw["lang"]
            & raw["Country (of organization)"].fillna("").map(lambda v, cell=cell: {c.strip() for c in v.split(",")} == cell)
        ]
        assert sorted(rows) == sorted(independent.index)
    # the figure docs/ecosystem.md quotes
    assert shares.loc["China", "rows"] == 100 and shares.loc["United States", "rows"] == 63


def test_epoch_family_shares_rest_on_their_rows(real_store, registry):
    path, eco, _ = real_store
    raw = _raw_epoch(eco)
    with Store(path) as st:
        rel = databases.releases(st.con)
    fam = adoption.epoch_shares(rel, registry, by="family", dataset="llmfit/large_scale_ai_models").set_index("family")
    base = raw[raw["open"] & raw["lang"]]
    qwen = base[base["Model"].str.contains(r"(?i)q(?:wen|wq|vq)") & base["Organization"].fillna("").str.contains("Alibaba")]
    assert sorted(fam.loc["qwen", "row_ids"]) == sorted(qwen.index)
    llama = base[base["Model"].str.contains(r"(?i)llama") & base["Organization"].fillna("").str.contains(r"(?i)meta ai|facebook")]
    assert sorted(fam.loc["llama", "row_ids"]) == sorted(llama.index)
    assert fam["rows"].sum() == len(base)
    names = dict(zip(fam.loc["deepseek", "row_ids"], fam.loc["deepseek", "names"]))
    assert all(re.search("(?i)deepseek", n) for n in names.values())


def test_hf_models_downloads_by_family(real_store, registry):
    path, eco, _ = real_store
    raw = json.loads((eco / "llmfit" / "data" / "hf_models.json").read_text())
    with Store(path) as st:
        fa = adoption.family_adoption(st.con, registry).set_index("family")
    qwen = sum(
        m.get("hf_downloads") or 0
        for m in raw
        if m["name"].split("/")[0] == "Qwen" and re.search(r"(?i)^(qwen|qwq|qvq)", m["name"].split("/")[1])
    )
    assert fa.loc["qwen", "downloads_30d"] == qwen
    assert fa["share_downloads_30d"].idxmax() == "qwen"


def test_real_signals_and_report(real_store, registry, tmp_path):
    from monoculture.ecosystem.report import build_report

    path, _, _ = real_store
    with Store(path) as st:
        out, data = build_report(st.con, registry, tmp_path / "eco.html")
    from html.parser import HTMLParser

    class Tags(HTMLParser):  # script bodies are CDATA to the parser, so only real tags are seen
        def __init__(self):
            super().__init__()
            self.srcs = []

        def handle_starttag(self, tag, attrs):
            self.srcs += [v for k, v in attrs if k in ("src", "href") and v and not v.startswith("#")]

    parser = Tags()
    parser.feed(out.read_text())
    assert parser.srcs == []  # no external script, stylesheet or image
    assert len(data.all_signals) == 4 * len(registry)
    assert set(data.all_signals["strength"]) <= {"n/a", "none", "weak", "moderate", "strong"}
    assert data.as_of.isoformat() == "2026-02-24"  # newest date in the data, not today
