"""The live client against a local server that behaves like the Hub (pagination, 429, dropped connections)."""

from __future__ import annotations

import pytest
from eco_hub_fake import FakeHub

from monoculture.ecosystem.fetch import fetch_families
from monoculture.ecosystem.hub_client import HubClient, HubUnavailable, list_params, ratelimit_wait
from monoculture.ecosystem.lineage import Lineage
from monoculture.store import Store


def client(hub: FakeHub, sleeps: list, **kw) -> HubClient:
    return HubClient(hub.url, token="", sleep=sleeps.append, base_wait=0.01, **kw)


def test_pages_follow_link_header_to_the_end(qwen_models):
    sleeps: list[float] = []
    with FakeHub(qwen_models, page_size=3) as hub, client(hub, sleeps) as c:
        pages = list(c.pages("/api/models", list_params(author="Qwen")))
    assert [len(p.items) for p in pages] == [3, 3, 3, 1]
    assert pages[-1].next_url is None and all(p.next_url for p in pages[:-1])
    ids = [m["id"] for p in pages for m in p.items]
    assert len(ids) == len(set(ids)) == 10
    assert sleeps == []


def test_429_waits_as_the_ratelimit_header_says(qwen_models):
    sleeps: list[float] = []
    with FakeHub(qwen_models, page_size=3) as hub, client(hub, sleeps) as c:
        hub.rate_limit["Qwen#3"] = 2  # second page answers 429 twice
        ids = [m["id"] for p in c.pages("/api/models", list_params(author="Qwen")) for m in p.items]
    assert len(ids) == 10
    assert c.stats["rate_limited"] == 2
    assert [w for why, w in c.waits if why == "429"] == [2.5, 2.5]  # "api";r=0;t=2 plus half a second


def test_retry_after_is_the_fallback():
    import httpx

    assert ratelimit_wait(httpx.Headers({"Retry-After": "7"})) == 7.0
    assert ratelimit_wait(httpx.Headers({"RateLimit": '"api";r=0;t=55'})) == 55.0
    assert ratelimit_wait(httpx.Headers({})) is None


def test_dropped_connections_are_retried(qwen_models):
    sleeps: list[float] = []
    with FakeHub(qwen_models, page_size=3) as hub, client(hub, sleeps) as c:
        hub.drop_before["Qwen#3"] = 1
        hub.drop_mid["Qwen#6"] = 1
        ids = [m["id"] for p in c.pages("/api/models", list_params(author="Qwen")) for m in p.items]
    assert len(ids) == len(set(ids)) == 10
    assert c.stats["network_errors"] == 2


def test_fetch_resumes_after_an_interruption_without_duplicates(tmp_path, qwen_models, registry):
    store = tmp_path / "eco.duckdb"
    fams = registry.select("qwen")
    with FakeHub(qwen_models, page_size=3) as hub:
        # the third page of the author query keeps failing: the first fetch gives up there
        hub.drop_mid["Qwen#6"] = 100
        hub.rate_limit["Qwen#3"] = 1
        with Store(store) as st, client(hub, [], max_retries=2) as c:
            with pytest.raises(HubUnavailable, match="rerun"):
                fetch_families(st.con, fams, c, derivatives_top=2, derivative_depth=2)
            sid = st.con.execute("SELECT snapshot_id FROM eco_snapshots").fetchone()[0]
            assert st.con.execute("SELECT status FROM eco_snapshots").fetchone()[0] == "partial"
            assert st.con.execute("SELECT count(*) FROM eco_models").fetchone()[0] == 6  # pages 1 and 2 were committed
            assert "cursor=" in st.con.execute("SELECT next_url FROM eco_fetch_cursors").fetchone()[0]
        assert hub.served["Qwen#0"] == 1 and hub.served["Qwen#3"] == 1
        hub.drop_mid.clear()
        # a new process, same options: resumes from the saved cursor
        with Store(store) as st, client(hub, []) as c:
            res = fetch_families(st.con, fams, c, derivatives_top=2, derivative_depth=2)
            assert res.resumed and res.snapshot_id == sid
            n, distinct = st.con.execute(
                "SELECT count(*), count(DISTINCT model_id) FROM eco_models WHERE snapshot_id = ?", [sid]
            ).fetchone()
            assert n == distinct == 16  # ten Qwen checkpoints and six derivatives, each once
            assert st.con.execute("SELECT status FROM eco_snapshots WHERE snapshot_id = ?", [sid]).fetchone()[0] == "complete"
            edges = st.con.execute("SELECT child, parent, relation FROM eco_edges WHERE snapshot_id = ?", [sid]).fetchall()
            children = st.con.execute("SELECT children_count FROM eco_models WHERE model_id = 'Qwen/Qwen2.5-7B'").fetchone()[0]
        # pages committed before the interruption were not requested again
        assert hub.served["Qwen#0"] == 1 and hub.served["Qwen#3"] == 1 and hub.served["Qwen#6"] == 1 and hub.served["Qwen#9"] == 1
        assert any("filter=base_model%3Aalice%2Fqwen-ft" in p for p in hub.log)  # depth 2 followed the top derivative
        assert children == 5  # model info carries the Hub's childrenModelCount (Instruct, alice, carol, dave, erin)
        own = [m["id"] for m in qwen_models if m["id"].startswith("Qwen/")]
        summ = Lineage.from_edges(edges).summary(own)
        assert summ["direct"] == 5 and summ["transitive"] == 6 and summ["max_depth"] == 2
        assert summ["transitive_by_relation"] == {"finetune": 3, "adapter": 1, "quantized": 1, "merge": 1, "unspecified": 0}
        # a finished fetch is never reopened: the next one is a new dated snapshot
        with Store(store) as st, client(hub, []) as c:
            again = fetch_families(st.con, fams, c, derivatives_top=0, derivative_depth=0)
            assert not again.resumed and again.snapshot_id != sid
            assert st.con.execute("SELECT count(*) FROM eco_snapshots WHERE status = 'complete'").fetchone()[0] == 2


def test_huggingface_hub_reads_the_same_server(qwen_models):
    """The recorded shapes are what huggingface_hub itself understands (endpoint argument)."""
    from huggingface_hub import HfApi

    with FakeHub(qwen_models, page_size=3) as hub:
        api = HfApi(endpoint=hub.url, token=False)
        infos = list(
            api.list_models(author="Qwen", expand=["createdAt", "downloads", "downloadsAllTime", "tags", "safetensors", "gated"])
        )
        info = api.model_info("Qwen/Qwen2.5-7B-Instruct", expand=["baseModels", "childrenModelCount", "createdAt"])
    assert len(infos) == 10 and {i.id for i in infos} == {m["id"] for m in qwen_models[:10]}
    assert infos[0].downloads_all_time == 50_000 and infos[0].safetensors.total == 7_000_000_000
    assert info.base_models is not None and info.children_model_count == 1
