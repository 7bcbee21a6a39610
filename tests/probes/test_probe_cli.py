"""`monoculture probe` as the integrator mounts it: app.command("probe")(probe_command)."""

from __future__ import annotations

import pytest
import typer
from probe_helpers import write_study
from typer.testing import CliRunner

from monoculture.probes.cli import probe_command
from monoculture.probes.report_section import perspectives_section
from monoculture.store import Store


@pytest.fixture(scope="module")
def app():
    app = typer.Typer()
    app.command("probe")(probe_command)

    @app.command()
    def noop():  # a second command, so that "probe" is a subcommand as in the real CLI
        pass

    return app


def countries_file(path):
    path.write_text(
        "question_id,country,option,share\n"
        "val-01,Kenya,A,0.8\nval-01,Kenya,B,0.15\nval-01,Kenya,C,0.05\n"
        "val-06,Kenya,A,0.7\nval-06,Kenya,C,0.3\n"
        "val-05,Kenya,2,1\n"
        "val-01,Sweden,D,0.6\nval-01,Sweden,C,0.4\n"
        "val-06,Sweden,B,0.5\nval-06,Sweden,C,0.5\n"
        "val-05,Sweden,5,1\n",
        encoding="utf-8",
    )
    return path


def test_probe_runs_and_prints_a_summary(tmp_path, app, fake_server, small_suite):
    s1 = fake_server(top_logprobs={"A": 0.6, "B": 0.3, "C": 0.1})
    s2 = fake_server(top_logprobs={"A": 0.55, "B": 0.35, "C": 0.1})
    models = [
        {"name": "alpha", "backend": "openai", "model": "fake", "params": {"base_url": s1.base_url, "api_key_env": None}},
        {"name": "beta", "backend": "openai", "model": "fake-2", "params": {"base_url": s2.base_url, "api_key_env": None}},
    ]
    study = write_study(tmp_path / "s.yaml", models)
    cf = countries_file(tmp_path / "countries.csv")
    args = ["probe", str(study), "--suite", str(small_suite), "--countries", str(cf), "--steer", "Sweden", "-q"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    out = " ".join(r.output.split())
    assert "Perspectives" in out and "Kenya" in out
    assert "countries: 2 countries on 3 questions" in out
    assert "value homogeneity" in out and "steering alpha towards Sweden" in out
    with Store(tmp_path / "s.duckdb", read_only=True) as st:
        sec = perspectives_section(st, study="probe-test", b=200)
    assert sec is not None and sec["title"] == "Perspectives" and "alpha" in sec["html"] and "beta" in sec["html"]
    # a rerun asks nothing new and prints the same ranking
    s1.reset_counts()
    r2 = CliRunner().invoke(app, ["probe", str(study), "--suite", str(small_suite), "--steer", "Sweden", "-q"])
    assert r2.exit_code == 0 and s1.counts["requests"] == 0
    assert "Kenya" in r2.output  # country data stays in the store


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--method", "vibes"], "unknown method"),
        (["--countries", "nope.csv"], "countries file or directory not found"),
        (["--languages", "xx"], "has no items in languages xx"),
        (["--suite", "open-ended"], "no options"),
    ],
)
def test_user_errors_exit_2_with_one_line_and_write_nothing(tmp_path, app, fake_server, extra, message):
    server = fake_server()
    study = write_study(
        tmp_path / "s.yaml",
        [{"name": "m", "backend": "openai", "model": "fake", "params": {"base_url": server.base_url, "api_key_env": None}}],
    )
    r = CliRunner().invoke(app, ["probe", str(study), "-q", *extra])
    assert r.exit_code == 2, r.output
    lines = [x for x in r.output.splitlines() if x.strip()]
    assert len(lines) == 1 and message in " ".join(r.output.split())
    assert server.counts["requests"] == 0
    assert not (tmp_path / "s.duckdb").exists()


def test_missing_study_file_exits_2(tmp_path, app):
    r = CliRunner().invoke(app, ["probe", str(tmp_path / "none.yaml")])
    assert r.exit_code == 2 and "study file not found" in r.output


def test_probe_command_is_callable_as_a_plain_function(tmp_path, fake_server, small_suite):
    """Defaults are real values (Annotated options), so other code can call it directly."""
    server = fake_server()
    study = write_study(
        tmp_path / "s.yaml",
        [{"name": "m", "backend": "openai", "model": "fake", "params": {"base_url": server.base_url, "api_key_env": None}}],
    )
    probe_command(study, suite=str(small_suite), quiet=True)
    assert server.counts["requests"] == 6
    with pytest.raises(typer.Exit) as e:
        probe_command(study, method="nope")
    assert e.value.exit_code == 2
