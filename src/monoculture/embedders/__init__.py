"""Embedders: one module each, registered in :mod:`.registry`, cached in the store by :mod:`.cache`.

The contract (:class:`.base.Embedder`) is what a third-party embedder implements; the
registry finds it through the ``monoculture.embedders`` entry-point group. Embedders are
imported when named, so ``import monoculture.embedders`` loads no model library.
"""

from monoculture.embedders.base import Embedder
from monoculture.embedders.cache import EMBED_SCHEMA, embed_cached, legacy_rows
from monoculture.embedders.registry import (
    BUILTIN,
    DEFAULT_EMBEDDER,
    available_embedders,
    check_embedder_name,
    embedder_class,
    get_embedder,
    parse_name,
)

__all__ = [
    "BUILTIN",
    "DEFAULT_EMBEDDER",
    "EMBED_SCHEMA",
    "Embedder",
    "available_embedders",
    "check_embedder_name",
    "embed_cached",
    "embedder_class",
    "get_embedder",
    "legacy_rows",
    "parse_name",
]
