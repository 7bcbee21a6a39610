"""The sentence-transformers embedder on its ONNX Runtime and OpenVINO backends, for real
(``sentence-transformers:<model>?backend=onnx|openvino``), against its torch backend.

optimum-onnx needs a transformers older than the main environment's, so the backends live in a
virtual environment of their own (``.venv-st``, made by scripts/setup_engines.sh;
``MONOCULTURE_ST_VENV`` names another). Everything that loads the model runs in that venv as a
subprocess; the main environment fills the stores and reads the vectors back. The tiny BERT is
built in the venv too (tests/tiny_models.py, with no hub): the venv's sentence-transformers 5
cannot read the module paths a sentence-transformers 6 folder names.

What is checked: the vectors of each backend equal the torch backend's (cosine and largest
absolute difference), through our registry and through ``monoculture measure`` end to end; the
cache key is the model's (shared by the backends, distinct for another model, and unchanged
when an export is saved into the model's folder); what the library does with its export (made
again on every load unless saved into the folder's onnx/ or openvino/, then loaded as is);
texts past the window are cut at it and counted, on every backend alike; and a Hub model in the
Hub cache loads on every backend with the Hub offline (a fake cache entry made here).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from monoculture.store import Store

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
VENV = Path(os.environ.get("MONOCULTURE_ST_VENV", REPO / ".venv-st"))
FAILED = REPO / ".engines" / "st-backends.failed"
BACKENDS = ("torch", "onnx", "openvino")
# Float tolerance of an exported graph against torch on unit vectors: the tiny model's largest
# difference is about 6e-8 on ONNX Runtime and 5e-5 on OpenVINO (its CPU plugin fuses kernels).
MIN_COSINE, MAX_ABS = 0.9999, 2e-4
TEXTS = [
    "a",
    "the cat sat on the mat and the dog sat too",
    "hello",
    "bread is baked in ovens by bakers every day",
    "x y",
    "the sea " * 100,  # past the tiny model's 128-token window...
    "the sea " * 100 + "and then the mountain, the moon and the rivers",  # ...and the same text, longer still
]
HUB_NAME, HUB_COMMIT = "tiny-org/tiny-st", "0123456789abcdef0123456789abcdef01234567"
UNCACHED_COMMIT = "f" * 40  # a revision of HUB_NAME that the cache does not hold
ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "DO_NOT_TRACK": "1"}

BUILD = """
import sys
sys.path.insert(0, sys.argv[1])
from tiny_models import build_tiny_sentence_transformer
for seed, path in enumerate(sys.argv[2:]):
    build_tiny_sentence_transformer(path, seed=seed)
"""

# Runs in the venv: our registry's embedder on each backend, what it reports, and whether the
# library exported the model on load (its warning "... Exporting the model to ONNX."). The runs
# listed in job["expect_error"] record their UserError instead of stopping the others.
PROBE = """
import json, logging, sys, time
import numpy as np
from monoculture.embedders import get_embedder
from monoculture.errors import UserError

job = json.loads(open(sys.argv[1]).read())
exports = []
class Catch(logging.Handler):
    def emit(self, record):
        if "Exporting the model" in record.getMessage():
            exports.append(record.getMessage())
logging.getLogger("sentence_transformers").addHandler(Catch())
out = []
for i, (model, backend, extra) in enumerate(job["runs"]):
    del exports[:]
    t0 = time.perf_counter()
    try:
        e = get_embedder(f"sentence-transformers:{model}?backend={backend}&device=cpu{extra}")
    except UserError as err:
        if i not in job["expect_error"]:
            raise
        out.append({"model": model, "backend": backend, "error": str(err)})
        continue
    load_s = time.perf_counter() - t0
    np.save(f"{job['out']}/{i}.npy", e.embed(job["texts"]))
    out.append({"model": model, "backend": e.backend, "name": e.name, "key": e.cache_key, "max_len": e.max_len,
                "class": type(e.model[0].auto_model).__name__, "truncated": e.truncated(job["texts"]).tolist(),
                "exported": bool(exports), "load_s": load_s})
    if i in job["save_into"]:  # what the library's warning asks for: save the export into the model's folder
        e.model.save_pretrained(model)
print(json.dumps(out))
"""

# Runs in the venv: the CLI's `measure` on each (store, embedder spec) pair, in one process so
# that torch, optimum and OpenVINO are imported once rather than once a backend.
MEASURE = """
import sys
from monoculture.cli import app
for path, spec in zip(sys.argv[1::2], sys.argv[2::2]):
    args = ["measure", path, "--embedder", spec, "-B", "20", "--permutations", "19", "--no-separability", "-q"]
    rc = app(args, standalone_mode=False)
    assert rc in (None, 0), (spec, rc)
"""


def _venv_python() -> Path:
    """The backends venv's python, or a skip that says why it is absent (the install's own
    failure message when scripts/setup_engines.sh recorded one)."""
    py = VENV / "bin" / "python"
    if FAILED.is_file() and "MONOCULTURE_ST_VENV" not in os.environ:
        pytest.skip(
            f"the ONNX / OpenVINO backends could not be installed by scripts/setup_engines.sh: {FAILED.read_text().strip()}"
        )
    if not py.is_file():
        why = FAILED.read_text().strip() if FAILED.is_file() else "run scripts/setup_engines.sh"
        pytest.skip(f"no sentence-transformers backends venv at {VENV} ({why})")
    if "MONOCULTURE_ST_VENV" not in os.environ and not (VENV / ".pins").is_file():
        # the script writes .pins last, once every import worked: without it the install was cut short
        pytest.skip(f"{VENV} is incomplete (no .pins: its install did not finish); run scripts/setup_engines.sh")
    return py


def _run(cmd: list, log: Path, timeout: float = 600, env: dict | None = None) -> str:
    """Run in the venv; stdout is returned, stderr (the libraries' warnings) goes to ``log``."""
    env = {**os.environ, **ENV, **(env or {})}
    with log.open("w") as err:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env, timeout=timeout)
    assert proc.returncode == 0, f"{cmd[:4]} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{log.read_text()[-4000:]}"
    return proc.stdout


def _close(got: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    cos = (got * ref).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1))
    return float(cos.min()), float(np.abs(got - ref).max())


@pytest.fixture(scope="module")
def st_env(tmp_path_factory):
    """The venv's python and two tiny BERTs built in it (seeds 0 and 1), each in its own folder."""
    py = _venv_python()
    root = tmp_path_factory.mktemp("st-backends")
    models = [root / "tiny0", root / "tiny1"]
    _run([str(py), "-c", BUILD, str(REPO / "tests"), *map(str, models)], root / "build.log")
    return {"py": py, "root": root, "models": models}


@pytest.fixture(scope="module")
def probed(st_env):
    """One venv process, by run index: 0 seed 0 on torch; 1 on ONNX and 2 on OpenVINO, each
    export then saved into the model's folder; 3 ONNX and 4 OpenVINO again; 5 seed 1 on torch;
    6 seed 0 on torch again; 7 torch, 8 ONNX and 9 OpenVINO on the Hub name HUB_NAME, whose
    cached snapshot is a copy of seed 1, with the Hub offline; 10 ONNX on HUB_NAME at its cached
    commit, 11 OpenVINO at UNCACHED_COMMIT and 12 ONNX at a branch the cache has no ref for
    (11 and 12 are expected to fail)."""
    root, (m0, m1) = st_env["root"], st_env["models"]
    hf_home = root / "hf"
    snapshot = hf_home / "hub" / f"models--{HUB_NAME.replace('/', '--')}" / "snapshots" / HUB_COMMIT
    shutil.copytree(m1, snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text(HUB_COMMIT)
    runs = [(m0, "torch"), (m0, "onnx"), (m0, "openvino"), (m0, "onnx"), (m0, "openvino"), (m1, "torch"), (m0, "torch")]
    runs += [(HUB_NAME, b) for b in BACKENDS]
    pinned = [("onnx", HUB_COMMIT), ("openvino", UNCACHED_COMMIT), ("onnx", "v2")]
    job = {
        "runs": [[str(m), b, ""] for m, b in runs] + [[HUB_NAME, b, f"&revision={rev}"] for b, rev in pinned],
        "texts": TEXTS,
        "out": str(root),
        "save_into": [1, 2],
        "expect_error": [11, 12],
    }
    (root / "job.json").write_text(json.dumps(job))
    cmd = [str(st_env["py"]), "-c", PROBE, str(root / "job.json")]
    out = json.loads(_run(cmd, root / "probe.log", env={"HF_HOME": str(hf_home)}).splitlines()[-1])
    for i, info in enumerate(out):
        if "error" not in info:
            info["vectors"] = np.load(root / f"{i}.npy")
    return dict(enumerate(out))


def test_onnx_and_openvino_vectors_equal_torch(probed):
    """Each backend runs the model on its own runtime (optimum's ORT / OV classes) and gives
    the torch vectors within float tolerance, the texts past the window included."""
    ref = probed[0]
    assert ref["class"] == "BertModel" and ref["backend"] == "torch"
    for i, backend, cls in ((1, "onnx", "ORTModelForFeatureExtraction"), (2, "openvino", "OVModelForFeatureExtraction")):
        got = probed[i]
        assert got["backend"] == backend and got["class"] == cls
        cos, diff = _close(got["vectors"], ref["vectors"])
        print(f"{backend} vs torch: min cosine {cos:.8f}, max abs diff {diff:.2e}", file=sys.stderr)
        assert cos > MIN_COSINE and diff < MAX_ABS, (backend, cos, diff)


def test_cache_key_is_the_model_not_the_backend(probed):
    """The backends share the model's cache key (the name says which model, the version which
    files); another model's differs; saving an export into the folder (onnx/, openvino/)
    changes no key, so vectors embedded before stay in use."""
    keys = {probed[i]["key"] for i in (0, 1, 2, 3, 4, 6)}
    assert len(keys) == 1, keys
    key = keys.pop()
    assert probed[0]["name"] == f"sentence-transformers:{probed[0]['model']}" and "@files-" in key
    assert probed[5]["key"] != key and probed[5]["key"].split("@")[1] != key.split("@")[1]


def test_export_made_on_each_load_unless_saved_into_the_folder(probed, st_env):
    """The library exports a folder without an export on every load (to a temporary folder it
    removes on exit: nothing is cached); once the export is saved into the model's onnx/ or
    openvino/ subfolder, it is loaded from there without exporting, to the same vectors."""
    m0 = st_env["models"][0]
    assert not probed[0]["exported"] and probed[1]["exported"] and probed[2]["exported"]
    assert (m0 / "onnx" / "model.onnx").is_file() and (m0 / "openvino" / "openvino_model.xml").is_file()
    assert not probed[3]["exported"] and not probed[4]["exported"]
    for first, again in ((1, 3), (2, 4)):
        cos, diff = _close(probed[again]["vectors"], probed[first]["vectors"])
        assert cos > MIN_COSINE and diff < 1e-6, (first, again, diff)
    # torch ignores the exports beside its weights: the same vectors as before they were saved
    np.testing.assert_array_equal(probed[6]["vectors"], probed[0]["vectors"])
    print(
        "load s: "
        + ", ".join(
            f"{p['backend']}{'(export)' if p['exported'] else ''} {p['load_s']:.2f}" for p in probed.values() if "error" not in p
        ),
        file=sys.stderr,
    )


def test_texts_past_the_window_are_cut_on_every_backend(probed):
    """The tiny model's window is 128 tokens: the two long texts are flagged on every backend,
    and both are embedded as their first 128 tokens, which they share (the same vector)."""
    for i in (0, 1, 2):
        p = probed[i]
        assert p["max_len"] == 128
        assert p["truncated"] == [False] * 5 + [True, True], p["backend"]
        np.testing.assert_allclose(p["vectors"][5], p["vectors"][6], atol=1e-6)
        assert np.abs(p["vectors"][5] - p["vectors"][4]).max() > 0.01  # a real vector, not a constant one


def test_measure_end_to_end_on_each_backend(st_env):
    """`monoculture measure --embedder 'sentence-transformers:<model>?backend=...'` (the CLI's
    command, the three backends in one venv process) on one store each (filled here): every
    backend stores the same texts under the same key, with vectors equal to torch's and the same
    texts counted as truncated."""
    sys.path.insert(0, str(REPO / "tests" / "embedders"))
    try:
        from embedder_data import fill
    finally:
        sys.path.remove(str(REPO / "tests" / "embedders"))
    root = st_env["root"]
    model = st_env["models"][1]  # seed 1: no export saved in its folder, so each backend exports on load
    pairs = []
    for backend in BACKENDS:
        path = root / f"{backend}.duckdb"
        with Store(path) as st:
            fill(st, extra={"long": "the sea " * 150})
        pairs += [str(path), f"sentence-transformers:{model}?backend={backend}&device=cpu"]
    _run([str(st_env["py"]), "-c", MEASURE, *pairs], root / "measure.log")
    stored = {}
    for backend in BACKENDS:
        with Store(root / f"{backend}.duckdb", read_only=True) as st:
            df = st.con.execute("SELECT embedder, text_hash, vector, truncated FROM embeddings ORDER BY text_hash").df()
        assert df["embedder"].nunique() == 1
        stored[backend] = df
    ref = stored["torch"]
    assert len(ref) == 4 * 10 * 2 + 4 and int(ref["truncated"].sum()) == 4
    for backend in ("onnx", "openvino"):
        df = stored[backend]
        assert df["embedder"].iloc[0] == ref["embedder"].iloc[0]
        assert df["text_hash"].tolist() == ref["text_hash"].tolist()
        assert df["truncated"].tolist() == ref["truncated"].tolist()
        cos, diff = _close(np.stack(df["vector"].to_numpy()), np.stack(ref["vector"].to_numpy()))
        assert cos > MIN_COSINE and diff < MAX_ABS, (backend, cos, diff)


def test_a_cached_hub_model_loads_offline_on_every_backend(probed):
    """The library lists a Hub repo's files online before it exports (even with the Hub offline
    and the model cached, where it fails: "Cannot reach ... offline mode is enabled"); the
    embedder loads the cached snapshot's folder instead. The key is the Hub name at the cached
    commit, the same on every backend, and the vectors are the snapshot's (seed 1's)."""
    ref = probed[5]
    for i, backend in ((7, "torch"), (8, "onnx"), (9, "openvino")):
        got = probed[i]
        assert got["backend"] == backend and got["key"] == f"sentence-transformers:{HUB_NAME}@{HUB_COMMIT[:12]}"
        assert got["exported"] == (backend != "torch")
        cos, diff = _close(got["vectors"], ref["vectors"])
        assert cos > MIN_COSINE and diff < MAX_ABS, (backend, cos, diff)


def test_the_offline_fallback_loads_only_the_revision_asked_for(probed):
    """The cached snapshot stands in for the Hub only at the revision asked for: the cached
    commit named by its hash loads, with the key and vectors of the unpinned load; a commit the
    cache does not hold, or a branch it has no ref for, is an error naming the model, never the
    snapshot that main points to."""
    pinned, unpinned = probed[10], probed[8]
    assert pinned["backend"] == "onnx" and pinned["key"] == unpinned["key"]
    np.testing.assert_allclose(pinned["vectors"], unpinned["vectors"], atol=1e-6)
    for i in (11, 12):
        assert "vectors" not in probed[i], probed[i]
        assert probed[i]["error"].startswith(f"cannot load embedding model {HUB_NAME!r}"), probed[i]
