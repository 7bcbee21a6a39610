"""Bad input to the Ray executor: exit 2 with the reason, and no store created. No cluster starts."""

from __future__ import annotations

import json

import pytest

from clihelp import mc

pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'monoculture[ray]')")


def _study(tmp_path, models: str, extra: str = "") -> str:
    suite = tmp_path / "suite.jsonl"
    suite.write_text(json.dumps({"id": "q1", "text": "Why?", "language": "en"}) + "\n")
    path = tmp_path / "s.yaml"
    path.write_text(f"name: s\nmodels:\n{models}suites: ['{suite}']\n{extra}")
    return str(path)


OPENAI = "  - {name: a, backend: openai, model: fake, params: {base_url: 'http://127.0.0.1:9/v1', api_key_env: none}}\n"


def test_backend_without_a_ray_path_is_refused_before_the_store(tmp_path):
    models = OPENAI + "  - {name: t, backend: transformers, model: some/model}\n"
    code, out = mc("run", _study(tmp_path, models), "--ray")
    assert code == 2
    assert "backend 'transformers' cannot run on Ray" in out and "'t'" in out
    assert not (tmp_path / "s.duckdb").exists()


def test_address_needs_ray_and_unknown_kind_names_the_field(tmp_path):
    code, out = mc("run", _study(tmp_path, OPENAI), "--ray-address", "auto")
    assert code == 2 and "--ray-address needs --ray" in out
    code, out = mc("run", _study(tmp_path, OPENAI, "executor: {kind: slurm}\n"))
    assert code == 2 and "executor.kind" in out
    code, out = mc("run", _study(tmp_path, OPENAI, "executor: {kind: ray, concurrency: 0}\n"))
    assert code == 2 and "executor.concurrency" in out
    assert not (tmp_path / "s.duckdb").exists()
