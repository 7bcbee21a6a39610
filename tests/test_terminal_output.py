"""Untrusted text in terminal output: brackets print as typed (no MarkupError, nothing eaten) and
control characters never reach the terminal raw (issue 16, items 12, 16 and 19)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import typer

from clihelp import mc
from monoculture.errors import UserError, reported
from monoculture.terminal import SafeConsole, clean, description_column, styled

EVIL = "\x1b[2J\x1b[31mevil"
BRACKETS = "m[/red]x[bold]"
BIDI = "rtl\u202e0.5 [0.1, 0.9]"
TOPICS = [
    "the sea",
    "a mountain",
    "bread",
    "winter",
    "a library",
    "trains",
    "music",
    "gardens",
    "the moon",
    "rivers",
    "cities",
    "chess",
]


def corpus(path: Path) -> Path:
    rows = []
    for model, style in (
        (EVIL, "O {t}, you shine; verse {i} about {t}."),
        (BRACKETS, "1. {t} facts\n2. more {t}\n3. item {i}"),
        (BIDI, "In my view {t} matters, take {i}."),
        ("plain", "Short note {i} on {t} for you."),
    ):
        for p, t in enumerate(TOPICS):
            for i in range(2):
                rows.append(
                    {
                        "model": model,
                        "prompt_id": f"p{p}",
                        "prompt": f"Tell me about {t}.",
                        "sample_index": i,
                        "text": style.format(t=t, i=i),
                    }
                )
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    d = tmp_path_factory.mktemp("term")
    store = d / "s.duckdb"
    code, out = mc("import", "jsonl", corpus(d / "out.jsonl"), "--store", store)
    assert code == 0, out
    return store


def assert_inert(out: str) -> None:
    assert "\x1b" not in out and "\u202e" not in out and "\r" not in out and "\x07" not in out, repr(out)


def test_ls_prints_hostile_model_names_inert_and_whole(store):
    code, out = mc("ls", store)
    assert code == 0, out
    assert_inert(out)
    assert "\\x1b[2J\\x1b[31mevil" in out and BRACKETS in out and "rtl\\u202e0.5" in out, out


def test_measure_prints_hostile_model_names_inert(store):
    code, out = mc("measure", store, "--embedder", "tfidf", "-B", "20", "-q")
    assert code == 0, out
    assert_inert(out)
    assert BRACKETS in out and "\\x1b[31mevil" in out, out


@pytest.mark.parametrize("name", ["outputs[v2].jsonl", "a[/x].jsonl", "b[/red].jsonl", "c[bold]d.jsonl"])
def test_file_names_with_brackets_in_errors_print_as_typed(tmp_path, name):
    code, out = mc("import", "jsonl", tmp_path / name, "--store", tmp_path / "s.duckdb")
    assert code == 2, out
    assert name in out, out


def test_user_error_messages_keep_their_brackets(capsys):
    with pytest.raises(typer.Exit):
        with reported():
            raise UserError("selections: expected {country: [numbers]} [/x]", where="f[v2].csv:3")
    err = capsys.readouterr().err
    assert "f[v2].csv:3: selections: expected {country: [numbers]} [/x]" in err, err


def test_error_with_control_characters_is_inert(capsys):
    with pytest.raises(typer.Exit):
        with reported():
            raise UserError(f"model {EVIL!s} \x07 bell\rover", where="x.jsonl:1")
    err = capsys.readouterr().err
    assert_inert(err)
    assert "\\x07" in err and "\\x0d" in err


def test_ecosystem_import_of_a_bracketed_file_name(tmp_path):
    from typer.testing import CliRunner

    from monoculture.ecosystem.cli import app

    (tmp_path / "d[").mkdir()
    (tmp_path / "d[" / "x]notes.txt").write_text("not ecosystem data", encoding="utf-8")  # skipped, printed as .../d[/x]notes.txt
    p = tmp_path / "d[" / "snap[v2][bold].json"
    p.write_text(
        json.dumps(
            {
                "format": "monoculture-ecosystem-snapshot",
                "taken_at": "2025-01-01T00:00:00Z",
                "models": [{"id": "Qwen/Qwen3-8B", "createdAt": "2025-04-28T10:00:00Z"}],
            }
        ),
        encoding="utf-8",
    )
    r = CliRunner().invoke(
        app,
        ["import", str(tmp_path / "d["), "--store", str(tmp_path / "e.duckdb")],
        catch_exceptions=False,
        env={"COLUMNS": "300"},
    )
    assert r.exit_code == 0, r.output
    assert "snap[v2][bold].json" in r.output and "d[/x]notes.txt" in r.output, r.output


def test_the_console_policy():
    buf = io.StringIO()
    con = SafeConsole(file=buf, force_terminal=True, width=200, highlight=False)
    con.print(f"plain {BRACKETS} {EVIL}")
    con.print(styled("[bold]{}[/bold] done", f"[/x]{EVIL}"))
    from rich.table import Table
    from rich.text import Text

    t = Table("name", title=f"t [/x] {EVIL}")
    t.add_row(Text(EVIL))
    con.print(t)
    from rich.progress import Progress

    prog = Progress(description_column(), console=con)
    task = prog.add_task(f"[/x] {EVIL}", total=1)
    con.print(prog.columns[0].render(prog.tasks[task]))
    out = buf.getvalue()
    # the console's own styling (ESC sequences) is there; none of the text's own escapes survive
    assert out.count("\x1b[2J") == 0 and out.count("\x1b[31m") == 0
    assert out.count("[/x]") == 3 and BRACKETS in out
    assert clean("a\tb\nc\x1b\u2066") == "a\tb\nc\\x1b\\u2066"
