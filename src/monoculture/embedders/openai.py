"""An OpenAI-compatible embeddings endpoint."""

from __future__ import annotations

import os
from typing import ClassVar

import numpy as np

from monoculture.embedders.base import Embedder, param_int, refuse_unknown
from monoculture.errors import UserError
from monoculture.retry import Again, Backoff, retry


class OpenAIEmbedder(Embedder):
    """An OpenAI-compatible embeddings endpoint; key from $OPENAI_API_KEY (or the variable
    named by $MONOCULTURE_EMBED_KEY_ENV), base URL from $OPENAI_BASE_URL.

    No version: a hosted model's weights are not visible from here, so vectors are keyed by the
    model name the server is asked for (name a dated model, such as text-embedding-3-small, when
    it matters). Long texts: the server's window (8191 tokens for OpenAI's models, ``?max_tokens=``
    for others); OpenAI refuses a longer input, others cut it. ``truncated`` flags the texts past
    it, estimated at 4 characters a token (the server's tokenizer is not known here)."""

    long_texts: ClassVar[str] = (
        "the server's window (max_tokens, 8191 by default): texts past it are flagged; OpenAI refuses them, other servers cut them"
    )

    @classmethod
    def check_spec(cls, arg: str, params: dict[str, str]) -> None:
        if not arg:
            raise UserError("embedder openai needs a model name: openai:<model>")
        refuse_unknown("openai", params, ("max_tokens",))

    def __init__(self, model: str, max_tokens: str | int = 8191):
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
        self.max_tokens = param_int("max_tokens", max_tokens)

    def truncated(self, texts):
        # The server's tokenizer is not known here (and tiktoken fetches its tables from the
        # network): an estimate at 4 characters a token, OpenAI's own rule of thumb for English.
        return np.array([len(t) // 4 > self.max_tokens for t in texts], dtype=bool)

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
