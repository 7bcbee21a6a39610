"""Any sentence-transformers model, on torch, ONNX Runtime or OpenVINO.

``sentence-transformers:<model>[?backend=onnx|openvino][&device=cpu|cuda][&fp16=true][&batch_size=N][&revision=<rev>]``.
``backend`` is the library's own option (SentenceTransformer(..., backend=...)): OpenVINO runs
2-5x faster than torch on CPUs, ONNX Runtime about as fast (docs/embedders.md). A model without
an export of its own is exported on every load (optimum; the library keeps no copy): saved into
the folder's onnx/ or openvino/ it is loaded from there, and those subfolders are not part of
the folder's version. They need optimum, which needs an older transformers than the main
environment's: tests/engines/test_st_backends.py runs them in .venv-st. ``fp16`` halves the weights on a GPU (torch backend). Texts are embedded longest
first, so a batch pads to lengths close to its own (batch by length), and put back in order.
Batches default to 64 texts on a GPU and 16 on a CPU, where 16 ran 1.3-3.4x faster than 64 on
every backend (long batches of long texts spill out of the caches; docs/embedders.md).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import ClassVar

import numpy as np

from monoculture.embedders.base import Embedder, files_fingerprint, param_bool, param_int, refuse_unknown, sort_by_length
from monoculture.errors import UserError

DEFAULT_MODEL = "intfloat/multilingual-e5-small"
BACKENDS = ("torch", "onnx", "openvino")
PARAMS = ("backend", "device", "fp16", "batch_size", "revision")
GPU_BATCH, CPU_BATCH = 64, 16  # default texts per batch (module docstring)
EXPORT_DIRS = ("onnx", "openvino")  # where sentence-transformers saves and looks for a backend's export


def _e5_prefix(model: str) -> str:
    # E5 models were trained with "query: " / "passage: " prefixes; "query: " is the one their
    # authors recommend for symmetric tasks such as semantic similarity.
    return "query: " if "e5" in model.lower() else ""


def _hub_cache() -> str | None:
    """The Hub cache the library loads from: ``$SENTENCE_TRANSFORMERS_HOME`` where it is set
    (SentenceTransformer's own default for ``cache_folder``), else huggingface_hub's. The commit
    read for the key, and the snapshot loaded offline, must come from that same cache."""
    return os.environ.get("SENTENCE_TRANSFORMERS_HOME") or None


def model_version(model: str, revision: str | None = None) -> str:
    """The revision of the model's files: the Hub commit of the cached snapshot for a Hub name,
    a hash of the files for a local folder (a retrained model in the same folder differs).
    The folder's onnx/ and openvino/ subfolders are left out: they hold exports of the same
    weights, which the library tells its users to save there, and saving one must not change
    the key of every vector already embedded with the model (the backends share the cache)."""
    if Path(model).is_dir():
        return "files-" + files_fingerprint(model, skip=EXPORT_DIRS)
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(model, "config.json", cache_dir=_hub_cache(), revision=revision)
    except Exception:  # noqa: BLE001 - an odd name: no cached snapshot to read a commit from
        hit = None
    if isinstance(hit, str):
        m = re.search(r"[/\\]snapshots[/\\]([0-9a-f]{40})[/\\]", hit)
        if m:
            return m.group(1)[:12]
    return f"rev-{revision}" if revision else "unknown-revision"


def _cached_snapshot(model: str, revision: str | None) -> str | None:
    """The folder of a Hub model's cached snapshot at ``revision`` (main's where None: a branch
    or tag through the cache's ref for it, a commit hash as is), or None where the cache has none
    (or ``model`` is a folder already): never another revision's snapshot."""
    if Path(model).is_dir():
        return None
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(model, revision=revision, cache_dir=_hub_cache(), local_files_only=True)
    except Exception:  # noqa: BLE001 - not cached, or an odd name: nothing to load locally
        return None


class SentenceTransformersEmbedder(Embedder):
    """A sentence-transformers model. Long texts are cut at the model's ``max_seq_length``
    (512 tokens for e5): ``truncated`` flags them and the summary counts them."""

    long_texts: ClassVar[str] = "truncated at the model's max_seq_length (counted)"
    requires: ClassVar[tuple[str, str] | None] = ("sentence_transformers", "transformers")

    @classmethod
    def check_spec(cls, arg: str, params: dict[str, str]) -> None:
        refuse_unknown("sentence-transformers", params, PARAMS)
        backend = params.get("backend", "torch")
        if backend not in BACKENDS:
            raise UserError(f"embedder sentence-transformers: backend={backend!r}; use one of {', '.join(BACKENDS)}")
        if "fp16" in params:
            param_bool("fp16", params["fp16"])
        if "batch_size" in params:
            param_int("batch_size", params["batch_size"])

    @classmethod
    def from_spec(cls, arg: str, params: dict[str, str]) -> SentenceTransformersEmbedder:
        cls.check_spec(arg, params)
        return cls(
            arg or DEFAULT_MODEL,
            device=params.get("device"),
            batch_size=param_int("batch_size", params["batch_size"]) if "batch_size" in params else None,
            backend=params.get("backend", "torch"),
            fp16=param_bool("fp16", params.get("fp16", False)),
            revision=params.get("revision"),
        )

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        device: str | None = None,
        batch_size: int | None = None,
        backend: str = "torch",
        fp16: bool = False,
        revision: str | None = None,
    ):
        try:
            import torch
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise UserError("the sentence-transformers embedder needs: pip install 'monoculture[transformers]'") from None
        # The name keeps what selects the vectors' model; backend and fp16 change the arithmetic,
        # not the model, within float tolerance, and the cache is shared across them.
        self.name = f"sentence-transformers:{model}"
        self.prefix = _e5_prefix(model)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        kwargs: dict = {"device": device, "backend": backend, "revision": revision}
        if fp16 and backend == "torch":
            kwargs["model_kwargs"] = {"torch_dtype": torch.float16}
        try:
            try:
                self.model = SentenceTransformer(model, **kwargs)
            except OSError:
                # ONNX and OpenVINO on a Hub name list the repo's files online to look for an
                # export, even for a cached model with the Hub offline: load the cached snapshot's
                # folder instead (exported on load, as any folder is); name and version stay the Hub's.
                local = _cached_snapshot(model, revision) if backend != "torch" else None
                if local is None:
                    raise
                self.model = SentenceTransformer(local, **{**kwargs, "revision": None})
        except OSError as e:
            raise UserError(f"cannot load embedding model {model!r}: {e}".splitlines()[0]) from None
        except Exception as e:  # onnx / openvino without optimum: the library raises a bare Exception
            if backend == "torch" or not (isinstance(e, ImportError) or "optimum" in str(e).lower()):
                raise
            extra = "onnx" if backend == "onnx" else "openvino"
            why = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise UserError(
                f"embedder {self.name} with backend={backend} needs optimum: pip install 'monoculture[{extra}]' ({why})"
            ) from None
        self.version = model_version(model, revision)
        self.backend, self.fp16, self.device = backend, bool(fp16 and backend == "torch"), device
        self.batch_size = batch_size or (CPU_BATCH if device == "cpu" else GPU_BATCH)
        self.max_len = int(self.model.max_seq_length or 512)

    def embed(self, texts):
        ordered, unsort = sort_by_length([self.prefix + t for t in texts])
        out = self.model.encode(
            ordered,
            batch_size=self.batch_size,
            normalize_embeddings=False,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(out, dtype=np.float32).reshape(len(texts), -1)[unsort]

    def truncated(self, texts):
        tok = self.model.tokenizer
        ids = tok([self.prefix + t for t in texts], add_special_tokens=True, truncation=False, verbose=False)["input_ids"]
        return np.asarray([len(x) for x in ids]) > self.max_len
