"""Tiny local image models for tests: a text-to-image pipeline, a captioner and a CLIP model.

No model hub is reachable from CI, so, as in ``tiny_models.py``, every builder makes a real
checkpoint from configs (random weights fixed by ``seed``, a byte-level BPE tokenizer trained on
the spot) and saves it with ``save_pretrained``: the code under test loads them through the same
``from_pretrained`` paths as the real models of ``examples/loops-images-gpu.yaml``.

API
---
- ``build_tiny_sd(path, seed=0)`` -> Path: a StableDiffusionPipeline folder (UNet2DConditionModel,
  AutoencoderKL, CLIPTextModel, tokenizer, DDIM scheduler) drawing 32x32 images.
- ``build_tiny_captioner(path, seed=0)`` -> Path: a VisionEncoderDecoderModel (ViT encoder, GPT-2
  decoder with cross-attention) with its image processor and tokenizer.
- ``build_tiny_clip(path, seed=0)`` -> Path: a CLIPModel with its processor.
- ``build_tiny_blip(path, seed=0)`` -> Path: a BlipForConditionalGeneration with its BlipProcessor
  (a captioner that takes a text prompt, like the GPU example's BLIP-large).
- ``cached_image_model(kind, seed=0, cache_dir=None)`` -> Path: built once per cache directory
  (``kind`` in ``KINDS``).
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import threading
from pathlib import Path

from tiny_models import _seeded

KINDS = ("sd", "captioner", "clip", "blip")

#: Words the captioner's tokenizer knows whole; the captions a random decoder writes are made of
#: them, so that they read as (odd) text rather than byte soup.
_WORDS = (
    "a photo of the an old stormy lighthouse on cliff gothic cathedral at night pastoral landscape with sheep "
    "red boat in harbour cat sleeping books city street rain lanterns market painting drawing of dog green "
    "mountain lake sunset forest river bridge castle window table bowl soup people walking snow tram"
)


def _tokenizer(*, max_length: int):
    """A word-level tokenizer (lowercased, punctuation split off, unknown words as ``<unk>``)
    with CLIP-like special tokens, bos/eos added around a text as CLIP's tokenizer does. Word
    level so that what a random decoder writes decodes to words, not byte soup."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    bos, eos, pad, unk = "<|startoftext|>", "<|endoftext|>", "<pad>", "<unk>"
    words = list(dict.fromkeys([bos, eos, pad, unk, *_WORDS.split(), ".", ",", "!", "?", "'", "-"]))
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token=unk))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", special_tokens=[(bos, tok.token_to_id(bos)), (eos, tok.token_to_id(eos))]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=bos, eos_token=eos, pad_token=pad, unk_token=unk, model_max_length=max_length
    )


def build_tiny_sd(path, seed: int = 0) -> Path:
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    path = Path(path)
    tok = _tokenizer(max_length=16)
    state = _seeded(seed)
    try:
        unet = UNet2DConditionModel(
            sample_size=8,
            in_channels=4,
            out_channels=4,
            layers_per_block=1,
            block_out_channels=(16, 32),
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=32,
            attention_head_dim=4,
            norm_num_groups=8,
        )
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"),
            up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"),
            block_out_channels=(8, 16, 16),
            latent_channels=4,
            norm_num_groups=8,
            layers_per_block=1,
            sample_size=32,
        )
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=len(tok),
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=4,
                max_position_embeddings=16,
                bos_token_id=tok.bos_token_id,
                eos_token_id=tok.eos_token_id,
                pad_token_id=tok.pad_token_id,
            )
        )
    finally:
        torch.random.set_rng_state(state)
    scheduler = DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False, steps_offset=1
    )
    pipe = StableDiffusionPipeline(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tok,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(path)
    return path


def build_tiny_captioner(path, seed: int = 0) -> Path:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, VisionEncoderDecoderModel, ViTConfig, ViTImageProcessor, ViTModel

    path = Path(path)
    tok = _tokenizer(max_length=64)
    state = _seeded(seed)
    try:
        encoder = ViTModel(
            ViTConfig(
                image_size=32,
                patch_size=8,
                hidden_size=32,
                num_hidden_layers=1,
                num_attention_heads=2,
                intermediate_size=64,
            )
        )
        decoder = GPT2LMHeadModel(
            GPT2Config(
                vocab_size=len(tok),
                n_positions=64,
                n_embd=32,
                n_layer=1,
                n_head=2,
                add_cross_attention=True,
                tie_word_embeddings=False,
                is_decoder=True,
                bos_token_id=tok.bos_token_id,
                eos_token_id=tok.eos_token_id,
                pad_token_id=tok.pad_token_id,
            )
        )
        with torch.no_grad():  # peaked next-token distributions, so greedy captions differ by image
            decoder.lm_head.weight.normal_(0.0, 0.5)
            never = [tok.bos_token_id, tok.pad_token_id, tok.unk_token_id, *tok.convert_tokens_to_ids(list(".,!?'-"))]
            for special in never:  # never the top token: captions are words
                decoder.lm_head.weight[special].zero_()
            for block in decoder.transformer.h:  # let the image through: captions depend on it
                block.crossattention.c_proj.weight.normal_(0.0, 0.5)
        model = VisionEncoderDecoderModel(encoder=encoder, decoder=decoder)
    finally:
        torch.random.set_rng_state(state)
    model.config.decoder_start_token_id = tok.bos_token_id
    model.config.pad_token_id = tok.pad_token_id
    model.config.eos_token_id = tok.eos_token_id
    model.generation_config.decoder_start_token_id = tok.bos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    model.save_pretrained(path)
    tok.save_pretrained(path)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(path)
    return path


def build_tiny_clip(path, seed: int = 0) -> Path:
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    path = Path(path)
    tok = _tokenizer(max_length=32)
    state = _seeded(seed)
    try:
        config = CLIPConfig(
            text_config={
                "vocab_size": len(tok),
                "hidden_size": 32,
                "intermediate_size": 64,
                "num_hidden_layers": 1,
                "num_attention_heads": 2,
                "max_position_embeddings": 32,
                "bos_token_id": tok.bos_token_id,
                "eos_token_id": tok.eos_token_id,
                "pad_token_id": tok.pad_token_id,
            },
            vision_config={
                "image_size": 32,
                "patch_size": 8,
                "hidden_size": 32,
                "intermediate_size": 64,
                "num_hidden_layers": 1,
                "num_attention_heads": 2,
            },
            projection_dim=16,
        )
        model = CLIPModel(config)
    finally:
        torch.random.set_rng_state(state)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(path)
    return path


def build_tiny_blip(path, seed: int = 0) -> Path:
    """A BLIP captioner (BlipForConditionalGeneration with its BlipProcessor: a BERT-style
    word-piece tokenizer with BLIP's [DEC] start token), the kind of model the GPU example
    names: the processor takes a text prompt, which the caption continues."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertTokenizerFast, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor

    path = Path(path)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]"]
    vocab = list(dict.fromkeys([*specials, *_WORDS.split(), "picture", ".", ","]))
    wp = Tokenizer(models.WordPiece({w: i for i, w in enumerate(vocab)}, unk_token="[UNK]"))
    wp.normalizer = normalizers.BertNormalizer(lowercase=True)
    wp.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    wp.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tok = BertTokenizerFast(
        tokenizer_object=wp,
        bos_token="[DEC]",
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    config = BlipConfig(
        text_config={
            "vocab_size": len(vocab),
            "hidden_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 64,
            "max_position_embeddings": 64,
            "encoder_hidden_size": 32,
            "bos_token_id": vocab.index("[DEC]"),
            "pad_token_id": 0,
            "sep_token_id": 3,
            "eos_token_id": 3,
            "tie_word_embeddings": False,
        },
        vision_config={
            "hidden_size": 32,
            "image_size": 32,
            "patch_size": 8,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 64,
        },
        projection_dim=16,
        tie_word_embeddings=False,
    )
    state = _seeded(seed)
    try:
        model = BlipForConditionalGeneration(config)
        with torch.no_grad():  # peaked, word-only next-token distributions (as for the VisionEncoderDecoder)
            head = model.text_decoder.cls.predictions
            head.decoder.weight.normal_(0.0, 0.5)
            head.decoder.weight[: len(specials)].zero_()
            head.bias.zero_()
    finally:
        torch.random.set_rng_state(state)
    model.save_pretrained(path)
    BlipProcessor(image_processor=BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer=tok).save_pretrained(path)
    return path


_BUILDERS = {"sd": build_tiny_sd, "captioner": build_tiny_captioner, "clip": build_tiny_clip, "blip": build_tiny_blip}
_lock = threading.Lock()


def cached_image_model(kind: str, seed: int = 0, cache_dir=None) -> Path:
    """Build once per cache directory; built in a scratch folder renamed into place, so a
    parallel worker never reads a half-written model."""
    if kind not in _BUILDERS:
        raise ValueError(f"unknown tiny image model {kind!r}; known: {', '.join(KINDS)}")
    if cache_dir is None:  # keyed by this file's hash, so an edited builder never serves a stale model
        tag = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]
        cache_dir = Path(tempfile.gettempdir()) / f"monoculture-tiny-images-{tag}"
    base = Path(cache_dir)
    target = base / f"{kind}-seed{seed}"
    with _lock:
        if (target / ".complete").exists():
            return target
        base.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=base))
        try:
            _BUILDERS[kind](scratch, seed)
            (scratch / ".complete").touch()
            try:
                scratch.rename(target)
            except OSError:
                if not (target / ".complete").exists():
                    raise
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return target
