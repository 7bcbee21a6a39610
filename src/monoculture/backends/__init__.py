"""Backend registry: names map to classes, imported lazily.

Third-party packages can add backends through the ``monoculture.backends`` entry-point group
(``name = "package.module:Class"``), the way ``llm`` plugins add models.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from monoculture.errors import UserError

BUILTIN: dict[str, str] = {
    "transformers": "monoculture.backends.hf_transformers:TransformersBackend",
    "openai": "monoculture.backends.openai_compat:OpenAIBackend",
    "vllm": "monoculture.backends.vllm_offline:VLLMBackend",
    "llamacpp": "monoculture.backends.llamacpp:LlamaCppBackend",
}


def _plugins() -> dict[str, str]:
    try:
        return {ep.name: ep.value for ep in entry_points(group="monoculture.backends")}
    except Exception:  # a broken third-party plugin must not break the tool
        return {}


def available_backends() -> dict[str, str]:
    return {**_plugins(), **BUILTIN}


def backend_class(name: str):
    target = available_backends().get(name)
    if target is None:
        raise UserError(f"unknown backend {name!r}; known: {', '.join(sorted(available_backends()))}")
    module, _, attr = target.partition(":")
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        extra = {"transformers": "transformers", "vllm": "vllm", "llamacpp": "llamacpp"}.get(name, name)
        raise UserError(
            f"backend {name!r} needs an optional dependency ({e.name or e}); install it with: pip install 'monoculture[{extra}]'"
        ) from None
    return getattr(mod, attr)


def create_backend(spec):
    return backend_class(spec.backend)(spec)
