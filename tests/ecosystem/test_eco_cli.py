"""The ``ecosystem`` sub-app end to end: fetch (local server), import, alerts, report, families."""

from __future__ import annotations

import json

from eco_hub_fake import FakeHub
from eco_snapshots import write_snapshot
from typer.testing import CliRunner

from monoculture.ecosystem.cli import app

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_fetch_import_alerts_report(tmp_path, qwen_models):
    store = tmp_path / "eco.duckdb"
    with FakeHub(qwen_models, page_size=4) as hub:
        r = run(
            "fetch",
            "--families",
            "qwen",
            "--store",
            store,
            "--endpoint",
            hub.url,
            "--derivatives-top",
            "1",
            "--save-dir",
            tmp_path / "snaps",
        )
    assert r.exit_code == 0, r.output
    assert "snapshot hub-" in r.output and "14 models" in r.output  # ten checkpoints + four direct derivatives of the top one
    saved = list((tmp_path / "snaps").glob("hub-*.json"))
    assert len(saved) == 1 and len(json.loads(saved[0].read_text())["models"]) == 14

    # the saved snapshot re-imports into another store with the same content
    other = tmp_path / "other.duckdb"
    r = run("import", saved[0], "--store", other)
    assert r.exit_code == 0, r.output and "snapshot" in r.output

    r = run("alerts", "--store", store, "--format", "json", "--min-strength", "n/a", "--families", "qwen,llama")
    assert r.exit_code == 0, r.output
    rows = json.loads(r.output)
    assert len(rows) == 8 and {x["signal"] for x in rows} == {"silence", "rate-drop", "licence-tightening", "ceremonial-open"}
    r = run("alerts", "--store", store)
    assert r.exit_code == 0 and "Retreat signals" in r.output

    r = run("report", "--store", store, "-o", tmp_path / "eco.html")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "eco.html").stat().st_size > 1_000_000  # plotly.js is inline


def test_user_errors_are_one_line_exit_2(tmp_path, qwen_models):
    r = runner.invoke(app, ["alerts", "--store", str(tmp_path / "missing.duckdb")])
    assert r.exit_code == 2 and "no store" in r.output
    snap = write_snapshot(tmp_path / "s.json", qwen_models)
    assert run("import", snap, "--store", tmp_path / "e.duckdb").exit_code == 0
    r = runner.invoke(app, ["alerts", "--store", str(tmp_path / "e.duckdb"), "--min-strength", "loud"])
    assert r.exit_code == 2 and "--min-strength" in r.output
    r = runner.invoke(app, ["fetch", "--families", "nonsense", "--store", str(tmp_path / "e.duckdb")])
    assert r.exit_code == 2 and "unknown family" in r.output
    r = runner.invoke(app, ["import", str(tmp_path / "nope.json"), "--store", str(tmp_path / "e.duckdb")])
    assert r.exit_code == 2 and "no such file" in r.output
    r = runner.invoke(app, ["report", "--store", str(tmp_path / "e.duckdb"), "--as-of", "yesterday"])
    assert r.exit_code == 2 and "--as-of" in r.output


def test_families_lists_the_registry():
    r = run("families")
    assert r.exit_code == 0
    for key in ("qwen", "llama", "mistral", "deepseek", "gemma", "phi", "jais"):
        assert key in r.output
