"""The contract every embedder keeps, built-in or plugged in.

An embedder turns texts into raw vectors. Its ``name`` is what the user asked for and what
results are labelled with; its ``version`` (a model revision, a hash of the model's files, a
package version) joins the name in the store's cache key, so vectors of a model updated under
the same name are never mixed with the old ones. Each embedder also says how it treats a text
longer than its window (``long_texts``), and which texts it had to cut (``truncated``).
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np

from monoculture.errors import UserError


class Embedder(ABC):
    """Turns texts into raw vectors. Two embedders with the same ``cache_key`` must give the
    same vector for the same text.

    Third-party embedders subclass this and register the class under the entry-point group
    ``monoculture.embedders``; ``--embedder NAME[:ARG][?key=value&...]`` then builds it with
    :meth:`from_spec`.
    """

    name: str
    #: The model's revision or a hash of its files ("" when the name alone fixes the vectors).
    version: str = ""
    batch_size: int = 64
    #: How a text past the model's window is embedded: one line for the docs and the summary.
    long_texts: ClassVar[str] = "no window: the whole text is embedded"
    #: Why this embedder gives a text a zero vector (measure leaves such texts out and counts them).
    zero_vectors: ClassVar[str] = ""
    #: (importable module, monoculture extra) this embedder needs, for the not-installed note.
    requires: ClassVar[tuple[str, str] | None] = None

    @classmethod
    def from_spec(cls, arg: str, params: dict[str, str]) -> Embedder:
        """Build from the parts of a name: ``kind:arg?key=value``. The default passes ``arg``
        (when given) first and the parameters as keyword strings."""
        cls.check_spec(arg, params)
        try:
            return cls(*([arg] if arg else []), **params)
        except TypeError as e:
            raise UserError(f"embedder {cls.__name__}: {e}") from None

    @classmethod  # noqa: B027 - optional hook: most embedders take any name their class accepts
    def check_spec(cls, arg: str, params: dict[str, str]) -> None:
        """Refuse a name this embedder cannot take, without loading anything (a study file's
        embedder is checked before its first generation)."""

    @property
    def cache_key(self) -> str:
        """The store's key for this embedder's vectors: the name, and the version when it has one."""
        return f"{self.name}@{self.version}" if self.version else self.name

    def fit(self, texts: Sequence[str]) -> None:  # noqa: B027 - optional hook: most embedders learn nothing
        """Corpus-fitted embedders (tfidf) learn here; their name then includes the corpus."""

    @abstractmethod
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(n, d) float32 raw vectors."""

    def truncated(self, texts: Sequence[str]) -> np.ndarray:
        """Which texts exceed the model's input limit and were cut (the summary counts them)."""
        return np.zeros(len(texts), dtype=bool)

    def vector_notes(self, dim: int) -> list[str]:
        """What a reader must know about this embedder's vectors of width ``dim`` (measure puts
        it in the notes), e.g. that fewer dimensions came out than were asked for."""
        return []


def param_bool(name: str, value: str | bool) -> bool:
    """An embedder parameter read as yes/no (``?fp16=1``): names the parameter when it is neither."""
    if isinstance(value, bool):
        return value
    v = value.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off", ""):
        return False
    raise UserError(f"embedder parameter {name}={value!r}: use true or false")


def refuse_unknown(embedder: str, params: dict[str, str], known: Sequence[str]) -> None:
    """An embedder name's parameters must be ones the embedder takes: a misspelt one would be
    dropped silently and the vectors made without it."""
    unknown = set(params) - set(known)
    if unknown:
        takes = ", ".join(known) if known else "none"
        raise UserError(f"embedder {embedder}: unknown parameter {', '.join(sorted(unknown))} (it takes {takes})")


def param_int(name: str, value: str | int, low: int = 1) -> int:
    """An embedder parameter read as a whole number of at least ``low``."""
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise UserError(f"embedder parameter {name}={value!r}: a whole number is needed") from None
    if n < low:
        raise UserError(f"embedder parameter {name}={value!r}: at least {low}")
    return n


#: Past this size a file is fingerprinted by its size and its first and last 4 MiB: hashing a
#: multi-gigabyte checkpoint on every load would cost more than the embedding of a small study.
_WHOLE_HASH_LIMIT = 64 << 20
_EDGE = 4 << 20


def files_fingerprint(folder: Path | str, pattern: str = "**/*", skip: tuple[str, ...] = ()) -> str:
    """A short hash of the files under ``folder`` (names, sizes, contents): the version of a
    model that has no revision. A retrained model saved in the same folder gets another one.
    ``skip``: top-level subfolders left out (files derived from the model, such as exports)."""
    h = hashlib.sha256()
    root = Path(folder)
    files = (x for x in root.glob(pattern) if x.is_file() and "__pycache__" not in x.parts)
    for p in sorted(x for x in files if x.relative_to(root).parts[0] not in skip):
        size = p.stat().st_size
        h.update(f"{p.relative_to(root).as_posix()}\0{size}\0".encode())
        with p.open("rb") as f:
            if size <= _WHOLE_HASH_LIMIT:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            else:
                h.update(f.read(_EDGE))
                f.seek(size - _EDGE)
                h.update(f.read(_EDGE))
    return h.hexdigest()[:12]


def sort_by_length(texts: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Texts longest first, and the permutation that puts their vectors back in the caller's
    order (``vectors[unsort]``): a batch of similar lengths pads little."""
    order = np.argsort([-len(t) for t in texts], kind="stable")
    unsort = np.empty_like(order)
    unsort[order] = np.arange(len(order))
    return [texts[i] for i in order], unsort
