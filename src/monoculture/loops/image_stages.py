"""The models of an image loop, as pluggable stages: text-to-image, captioner, image embedder.

Each stage is a small class with one batch method, so that another implementation (a hosted
API, a chat VLM as captioner) plugs in by ``kind: module:Class`` in the study file or through
the entry-point groups ``monoculture.text_to_image`` and ``monoculture.captioners``, the way
backends do. The built-in ones load local folders or hub ids through ``from_pretrained``:

- :class:`DiffusersTextToImage`: ``AutoPipelineForText2Image`` (Stable Diffusion 1/2, SDXL,
  SDXL-Turbo, ...).
- :class:`TransformersCaptioner`: ``AutoModelForImageTextToText`` for captioning models
  (VisionEncoderDecoder, BLIP, GIT) with their processor.
- :class:`ClipEmbedder`: ``CLIPModel`` image and text features, unit-normalised.

Determinism: every image is drawn from a noise seed of its own (a CPU ``torch.Generator``, so
the same seed gives the same starting noise on any device), and a sampling captioner captions
each image under its own seed; so a chain's images depend on the chain and the round, not on
which other chains shared its batch (up to the float differences of batched kernels).
"""

from __future__ import annotations

import importlib
import io
import os
import warnings
from abc import ABC, abstractmethod
from collections.abc import Sequence
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

import numpy as np

from monoculture.errors import UserError

if TYPE_CHECKING:
    from PIL.Image import Image

    from monoculture.loops.images import CaptionerSpec, ImageEmbedderSpec, TextToImageSpec

TEXT_TO_IMAGE = {"diffusers": "monoculture.loops.image_stages:DiffusersTextToImage"}
CAPTIONERS = {"transformers": "monoculture.loops.image_stages:TransformersCaptioner"}


def resolve_device(device: str | None) -> str:
    """None or "auto": cuda when torch sees one, else cpu. A cuda device torch cannot see is
    an error before any model loads."""
    import torch

    if device in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device is {device!r} but torch sees no CUDA device", where="loops.images.device")
    return device


def torch_dtype(name: str, device: str):
    """``auto``: float16 on a GPU (how diffusion checkpoints are run), float32 on CPU (half
    precision is slow or unsupported there)."""
    import torch

    if name == "auto":
        return torch.float16 if device.startswith("cuda") else torch.float32
    return getattr(torch, name)


def model_ref(model: str, where: str) -> str:
    """A path that looks local must exist (else the hub would be asked, and fail obscurely)."""
    looks_local = model.startswith(("/", "./", "../", "~")) or os.path.isabs(model)
    if looks_local:
        path = os.path.expanduser(model)
        if not os.path.exists(path):
            raise UserError(f"model path {model!r} does not exist", where=where)
        return path
    return model


def png_bytes(image: Image) -> bytes:
    """The image as PNG (lossless, so the store keeps exactly what the captioner saw), at zlib's
    fastest level: encoding runs between GPU batches, and ``optimize`` took seconds per
    1024 x 1024 image (level 1: about 0.15 s, files about a fifth larger than level 6's)."""
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def png_image(data: bytes) -> Image:
    from PIL import Image as PILImage

    img = PILImage.open(io.BytesIO(data))
    img.load()
    return img.convert("RGB")


def _load_error(what: str, model: str, e: BaseException, where: str) -> UserError:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return UserError(f"cannot load {what} {model!r}: {msg}", where=where)


# ---------------------------------------------------------------------------------------------
# Text to image


class TextToImage(ABC):
    """Draws one image per prompt; ``seeds`` are the noise seeds, one per prompt."""

    def __init__(self, spec: TextToImageSpec, device: str):
        self.spec = spec
        self.device = device

    @abstractmethod
    def draw(self, prompts: Sequence[str], seeds: Sequence[int]) -> list[Image]: ...

    def close(self) -> None:  # noqa: B027 - optional: most stages free memory when dropped
        """Free the model's memory before the next stage of another pair loads."""


class DiffusersTextToImage(TextToImage):
    """Any diffusers text-to-image pipeline ``AutoPipelineForText2Image`` can load."""

    def __init__(self, spec: TextToImageSpec, device: str):
        super().__init__(spec, device)
        try:
            from diffusers import AutoPipelineForText2Image
            from diffusers.utils import logging as dlogging
        except ImportError:
            raise UserError("text-to-image needs diffusers: pip install 'monoculture[images]'", where="loops.images") from None
        dlogging.disable_progress_bar()
        where = f"loops.images.text_to_image {spec.name}"
        ref = model_ref(spec.model, where)
        kw: dict[str, Any] = {"torch_dtype": torch_dtype(spec.dtype, device)}
        if spec.revision:
            kw["revision"] = spec.revision
        if spec.variant:
            kw["variant"] = spec.variant
        try:
            with warnings.catch_warnings():
                # diffusers 0.3x renamed torch_dtype to dtype and warns; older releases know only
                # torch_dtype, which every release up to 1.0 accepts.
                warnings.simplefilter("ignore", FutureWarning)
                pipe = AutoPipelineForText2Image.from_pretrained(ref, **kw)
        except (OSError, ValueError, KeyError, ImportError) as e:
            raise _load_error("text-to-image pipeline", spec.model, e, where) from None
        if hasattr(pipe, "safety_checker") and getattr(pipe, "safety_checker", None) is not None:
            # A blacked-out image would be captioned "a black square" and the chain would
            # measure the filter, not the model; the study's author chose the model.
            pipe.safety_checker = None
        pipe.to(device)
        pipe.set_progress_bar_config(disable=True)
        self.pipe: Any = pipe

    def draw(self, prompts: Sequence[str], seeds: Sequence[int]) -> list[Image]:
        import torch

        p = self.spec.params
        generators = [torch.Generator(device="cpu").manual_seed(int(s)) for s in seeds]
        kw: dict[str, Any] = {
            "prompt": list(prompts),
            "num_inference_steps": p.steps,
            "guidance_scale": p.guidance,
            "generator": generators,
            "output_type": "pil",
        }
        if p.height:
            kw["height"] = p.height
        if p.width:
            kw["width"] = p.width
        if p.negative_prompt is not None and p.guidance > 1.0:
            kw["negative_prompt"] = [p.negative_prompt] * len(prompts)
        with torch.inference_mode():
            images = self.pipe(**kw).images
        return list(images)

    def close(self) -> None:
        self.pipe = None
        _free_cuda()


# ---------------------------------------------------------------------------------------------
# Captioner


class Captioner(ABC):
    """Describes each image in a few words; ``seeds`` matter only when it samples."""

    def __init__(self, spec: CaptionerSpec, device: str):
        self.spec = spec
        self.device = device

    @abstractmethod
    def caption(self, images: Sequence[Image], seeds: Sequence[int]) -> list[str]: ...

    def close(self) -> None:  # noqa: B027 - optional
        """Free the model's memory."""


class TransformersCaptioner(Captioner):
    """Captioning models through ``AutoModelForImageTextToText`` (VisionEncoderDecoder, BLIP,
    GIT): the caption is the text the model writes after ``params.prompt`` (which is removed
    where the model repeats it), with special tokens and surrounding whitespace removed."""

    def __init__(self, spec: CaptionerSpec, device: str):
        super().__init__(spec, device)
        import transformers
        from transformers import AutoImageProcessor, AutoProcessor, AutoTokenizer

        from monoculture.backends.hf_transformers import _version_at_least

        # transformers 4.46 named the auto class for captioners AutoModelForImageTextToText
        # (AutoModelForVision2Seq before), and 4.56 renamed torch_dtype to dtype.
        names = ("AutoModelForImageTextToText", "AutoModelForVision2Seq")
        auto: Any = next(getattr(transformers, n) for n in names if hasattr(transformers, n))
        dtype_kw = "dtype" if _version_at_least(transformers.__version__, (4, 56)) else "torch_dtype"
        where = f"loops.images.captioner {spec.name}"
        ref = model_ref(spec.model, where)
        kw: dict[str, Any] = {"revision": spec.revision} if spec.revision else {}
        try:
            model = auto.from_pretrained(ref, **{dtype_kw: torch_dtype(spec.dtype, device)}, **kw)
            processor = AutoProcessor.from_pretrained(ref, **kw)
            if hasattr(processor, "image_processor") and hasattr(processor, "tokenizer"):
                self.processor: Any = processor
                self.image_processor: Any = None
                self.tokenizer: Any = processor.tokenizer
            else:  # a VisionEncoderDecoder folder: an image processor and a tokenizer, no processor
                self.processor = None
                self.image_processor = AutoImageProcessor.from_pretrained(ref, **kw)
                self.tokenizer = AutoTokenizer.from_pretrained(ref, **kw)
        except (OSError, ValueError, KeyError, ImportError) as e:
            raise _load_error("captioner", spec.model, e, where) from None
        if spec.params.prompt and self.processor is None:
            raise UserError(
                "params.prompt needs a model whose processor takes text (BLIP, GIT); this one has an image processor only",
                where=where,
            )
        model.to(device)
        model.eval()
        self.model: Any = model

    def _inputs(self, images: Sequence[Image]) -> dict[str, Any]:
        prompt = self.spec.params.prompt
        if self.processor is not None:
            if prompt:
                enc = self.processor(images=list(images), text=[prompt] * len(images), return_tensors="pt", padding=True)
            else:
                enc = self.processor(images=list(images), return_tensors="pt")
        else:
            enc = self.image_processor(images=list(images), return_tensors="pt")
        dtype = next(self.model.parameters()).dtype
        out = {}
        for k, v in enc.items():
            v = v.to(self.device)
            if v.is_floating_point():
                v = v.to(dtype)
            out[k] = v
        return out

    def _generate(self, images: Sequence[Image]) -> list[str]:
        import torch

        p = self.spec.params
        gen: dict[str, Any] = {"max_new_tokens": p.max_new_tokens, "num_beams": p.num_beams, "do_sample": p.do_sample}
        if p.do_sample:
            gen["temperature"] = p.temperature
        with torch.inference_mode():
            out = self.model.generate(**self._inputs(images), **gen)
        texts = self.tokenizer.batch_decode(out, skip_special_tokens=True)
        return [_strip_prompt(t, p.prompt) for t in texts]

    def caption(self, images: Sequence[Image], seeds: Sequence[int]) -> list[str]:
        import torch

        if not self.spec.params.do_sample:
            return self._generate(images)
        # Sampling: one image at a time under its own seed, so a caption does not depend on
        # which images shared its batch.
        out = []
        devices = [torch.device(self.device)] if str(self.device).startswith("cuda") else []
        for img, s in zip(images, seeds):
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(int(s))
                out.extend(self._generate([img]))
        return out

    def close(self) -> None:
        self.model = None
        _free_cuda()


def _strip_prompt(text: str, prompt: str | None) -> str:
    text = " ".join(text.split())
    if prompt:
        p = " ".join(prompt.split())
        if text.lower().startswith(p.lower()):
            text = text[len(p) :].strip()
    return text


# ---------------------------------------------------------------------------------------------
# Embedder


class ClipEmbedder:
    """CLIP image and text features, unit-normalised (cosine = dot product). Vectors are cached
    in the store's ``embeddings`` table under :attr:`image_name` (keyed by the PNG's hash) and
    :attr:`text_name` (keyed by the caption's), so a rerun embeds nothing new."""

    def __init__(self, spec: ImageEmbedderSpec, device: str):
        self.spec = spec
        self.device = device
        self.model: Any = None
        tag = spec.model + (f"@{spec.revision}" if spec.revision else "")
        self.image_name = f"clip-image:{tag}"
        self.text_name = f"clip-text:{tag}"

    def _load(self) -> None:
        if self.model is not None:
            return
        from transformers import AutoProcessor, CLIPModel

        where = "loops.images.embedder"
        ref = model_ref(self.spec.model, where)
        kw: dict[str, Any] = {"revision": self.spec.revision} if self.spec.revision else {}
        try:
            model = CLIPModel.from_pretrained(ref, **kw)
            self.processor: Any = AutoProcessor.from_pretrained(ref, **kw)
        except (OSError, ValueError, KeyError, ImportError) as e:
            raise _load_error("CLIP model", self.spec.model, e, where) from None
        model.to(self.device)  # type: ignore[arg-type]  # as above
        model.eval()
        self.model = model

    @staticmethod
    def _features(out: Any) -> np.ndarray:
        """transformers < 5 returns the projected features, 5 an output whose pooler_output
        holds them."""
        t = out if hasattr(out, "detach") else out.pooler_output
        X = t.detach().float().cpu().numpy().astype(np.float32)
        n = np.linalg.norm(X, axis=1, keepdims=True)
        return X / np.where(n > 0, n, 1.0)

    def embed_images(self, images: Sequence[Image]) -> np.ndarray:
        import torch

        self._load()
        parts = []
        for i in range(0, len(images), self.spec.batch_size):
            enc = self.processor(images=list(images[i : i + self.spec.batch_size]), return_tensors="pt")
            with torch.inference_mode():
                parts.append(self._features(self.model.get_image_features(pixel_values=enc["pixel_values"].to(self.device))))
        return np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        self._load()
        tok = self.processor.tokenizer
        limit = min(int(getattr(tok, "model_max_length", 77) or 77), int(self.model.config.text_config.max_position_embeddings))
        parts = []
        for i in range(0, len(texts), self.spec.batch_size):
            enc = tok(
                list(texts[i : i + self.spec.batch_size]), padding=True, truncation=True, max_length=limit, return_tensors="pt"
            )
            enc = {k: v.to(self.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
            with torch.inference_mode():
                parts.append(self._features(self.model.get_text_features(**enc)))
        return np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)

    def close(self) -> None:
        self.model = None
        _free_cuda()


# ---------------------------------------------------------------------------------------------
# Registry


def _plugins(group: str) -> dict[str, str]:
    try:
        return {ep.name: ep.value for ep in entry_points(group=group)}
    except Exception:  # a broken third-party plugin must not break the tool
        return {}


def stage_class(kind: str, builtin: dict[str, str], group: str, where: str) -> type:
    """A stage's class from its ``kind``: a built-in name, an entry point of ``group``, or
    ``module:Class``."""
    target = {**_plugins(group), **builtin}.get(kind)
    if target is None:
        if ":" not in kind:
            known = ", ".join(sorted({**_plugins(group), **builtin}))
            raise UserError(f"unknown kind {kind!r}; use {known} or module:Class", where=where)
        target = kind
    module, _, attr = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except ImportError as e:
        raise UserError(
            f"kind {kind!r}: cannot import {module} ({e.name or e}); pip install 'monoculture[images]'", where=where
        ) from None
    except AttributeError:
        raise UserError(f"kind {kind!r}: {module} has no {attr}", where=where) from None
    return cls


def make_text_to_image(spec: TextToImageSpec, device: str) -> TextToImage:
    where = f"loops.images.text_to_image {spec.name}"
    return stage_class(spec.kind, TEXT_TO_IMAGE, "monoculture.text_to_image", where)(spec, device)


def make_captioner(spec: CaptionerSpec, device: str) -> Captioner:
    where = f"loops.images.captioner {spec.name}"
    return stage_class(spec.kind, CAPTIONERS, "monoculture.captioners", where)(spec, device)


def _free_cuda() -> None:
    import gc

    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass
