"""Tiny local models for tests: no model hub is reachable from CI, so tests build their own.

Every builder trains a real tokenizer (byte-level BPE on a few KB of text) and saves a real
checkpoint with ``save_pretrained``, so that the code under test goes through the same
``from_pretrained`` path as with a hub model. Weights are random but fixed by ``seed``: two
seeds give two different "models", which is what similarity tests need.

API
---
- ``build_tiny_qwen2(path, seed=0, *, chat_template=True)`` -> Path (Qwen2ForCausalLM, ChatML)
- ``build_tiny_llama(path, seed=0, *, chat_template=True)`` -> Path (LlamaForCausalLM,
  Llama-3-style template that starts with the BOS token, and a tokenizer that also adds BOS
  itself, like the real one: the double-BOS trap is reproduced on purpose)
- ``build_tiny_sentence_transformer(path, seed=0)`` -> Path (tiny BERT + mean pooling)
- ``build_tiny_model(kind, path, seed=0, **kw)`` -> Path; ``kind`` in ``KINDS``
- ``cached_tiny_model(kind, seed=0, cache_dir=None, **kw)`` -> Path: builds once, then reuses.
  Tests pass a session directory (``tmp_path_factory.mktemp(...)``); without one a directory
  under the system temp dir keyed by this file's hash is used, so an edited builder never
  serves a stale model.
- ``train_tiny_tokenizer(style)`` -> PreTrainedTokenizerFast (``style`` "chatml" or "llama3")
- ``CORPUS``: the training text.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
from pathlib import Path

KINDS = ("qwen2", "llama", "sentence-transformer")

_SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Which answer is correct: A, B, C or D?",
    "Models trained on the same data tend to give the same answers.",
    "A monoculture is fragile: one disease can take the whole field.",
    "Paris is the capital of France, and Berlin is the capital of Germany.",
    "Please answer with a single letter.",
    "The weather today is sunny with a light breeze from the west.",
    "Two plus two equals four; three times three equals nine.",
    "She opened the window and looked at the river below.",
    "Language models predict the next token from the previous ones.",
    "Answer: B. Explanation: the other options contradict the premise.",
    "Write a short poem about the sea, the wind and the stars.",
    "Il fait beau aujourd'hui. Es ist ein schöner Tag. Hace buen tiempo.",
    "user: hello there\nassistant: Hi! How can I help you today?",
    "system: You are a helpful assistant.",
    "1, 2, 3, 4, 5, 6, 7, 8, 9, 10 - counting is easy.",
]
# ~5 KB: enough for a few hundred merges, small enough to train in milliseconds.
CORPUS = "\n".join(f"{i}. {s}" for i in range(6) for s in _SENTENCES)

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
LLAMA3_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] + '<|eot_id|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

_STYLES = {
    # special tokens, then the roles of pad / eos / bos
    "chatml": (["<|endoftext|>", "<|im_start|>", "<|im_end|>"], {"pad_token": "<|endoftext|>", "eos_token": "<|im_end|>"}),
    "llama3": (
        ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
        {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "pad_token": "<|end_of_text|>"},
    ),
}


def train_tiny_tokenizer(style: str = "chatml", vocab_size: int = 384, *, chat_template: bool = True):
    """A byte-level BPE tokenizer trained on CORPUS: any text round-trips, like a real one."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials, roles = _STYLES[style]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([CORPUS], trainer=trainer)
    if style == "llama3":
        bos = roles["bos_token"]
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tok.token_to_id(bos))]
        )
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **roles)
    if chat_template:
        fast.chat_template = CHATML_TEMPLATE if style == "chatml" else LLAMA3_TEMPLATE
    return fast


def _seeded(seed: int):
    """Random init under a fixed seed without disturbing the caller's global RNG."""
    import torch

    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    return state


def build_tiny_qwen2(path: str | os.PathLike, seed: int = 0, *, chat_template: bool = True) -> Path:
    """Qwen2-shaped: ChatML template, eos <|im_end|>, generation_config with two eos ids and
    the sampling defaults real Qwen checkpoints ship (which a backend must not silently apply)."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    path = Path(path)
    tok = train_tiny_tokenizer("chatml", chat_template=chat_template)
    config = Qwen2Config(
        vocab_size=len(tok),
        hidden_size=64,  # head_dim 32: the smallest head size every vLLM attention backend takes
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=512,
        tie_word_embeddings=False,
        bos_token_id=None,
        eos_token_id=tok.convert_tokens_to_ids("<|endoftext|>"),
        pad_token_id=tok.pad_token_id,
    )
    state = _seeded(seed)
    try:
        model = Qwen2ForCausalLM(config)
        _spread_logits(model)
    finally:
        torch.random.set_rng_state(state)
    model.generation_config = GenerationConfig(
        eos_token_id=[tok.eos_token_id, tok.pad_token_id],
        pad_token_id=tok.pad_token_id,
        do_sample=True,
        temperature=0.7,
        top_p=0.8,
        top_k=20,
        repetition_penalty=1.3,
    )
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def build_tiny_llama(path: str | os.PathLike, seed: int = 0, *, chat_template: bool = True) -> Path:
    """Llama-shaped: Llama-3 header template with the BOS inside the template."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    path = Path(path)
    tok = train_tiny_tokenizer("llama3", chat_template=chat_template)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=False,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    state = _seeded(seed)
    try:
        model = LlamaForCausalLM(config)
        _spread_logits(model)
    finally:
        torch.random.set_rng_state(state)
    model.generation_config = GenerationConfig(
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id
    )
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def _spread_logits(model) -> None:
    """Default init (std 0.02) makes a 2-layer model's next-token distribution almost uniform,
    so every seed samples the same noise and greedy decoding hinges on float ties. Larger
    output weights give each seed a distinct, peaked distribution, like a trained model."""
    import torch

    with torch.no_grad():
        head = model.get_output_embeddings().weight
        head.normal_(0.0, 0.35)


def build_tiny_sentence_transformer(path: str | os.PathLike, seed: int = 0) -> Path:
    """Tiny BERT + mean pooling + normalisation, saved as a SentenceTransformer directory."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    try:
        from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers.models import Normalize, Pooling, Transformer
    from sentence_transformers import SentenceTransformer

    path = Path(path)
    work = Path(tempfile.mkdtemp(prefix="tiny-bert-"))
    try:
        words = sorted({w for w in CORPUS.lower().replace("\n", " ").split() if w})
        chars = sorted({c for c in CORPUS.lower() if not c.isspace()})
        vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *(f"##{c}" for c in chars), *words]
        vocab = list(dict.fromkeys(vocab))
        (work / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
        tok = BertTokenizerFast(vocab_file=str(work / "vocab.txt"), do_lower_case=True)
        config = BertConfig(
            vocab_size=len(vocab),
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=128,
        )
        state = _seeded(seed)
        try:
            bert = BertModel(config)
        finally:
            torch.random.set_rng_state(state)
        hf_dir = work / "hf"
        bert.save_pretrained(hf_dir)
        tok.save_pretrained(hf_dir)
        transformer = Transformer(str(hf_dir), max_seq_length=128)
        pooling = Pooling(config.hidden_size, "mean")
        model = SentenceTransformer(modules=[transformer, pooling, Normalize()], device="cpu")
        model.save(str(path))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return path


_BUILDERS = {
    "qwen2": build_tiny_qwen2,
    "llama": build_tiny_llama,
    "sentence-transformer": build_tiny_sentence_transformer,
}


def build_tiny_model(kind: str, path: str | os.PathLike, seed: int = 0, **kw) -> Path:
    if kind not in _BUILDERS:
        raise ValueError(f"unknown tiny model kind {kind!r}; known: {', '.join(KINDS)}")
    return _BUILDERS[kind](path, seed, **kw)


_lock = threading.Lock()


def _default_cache_dir() -> Path:
    import torch
    import transformers

    digest = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]
    tag = f"{digest}-torch{torch.__version__}-tf{transformers.__version__}".replace("+", "_")
    return Path(os.environ.get("MONOCULTURE_TINY_CACHE") or tempfile.gettempdir()) / f"monoculture-tiny-{tag}"


def cached_tiny_model(kind: str, seed: int = 0, cache_dir: str | os.PathLike | None = None, **kw) -> Path:
    """Build once per cache directory. Builds go to a scratch directory renamed into place, so
    parallel test workers never see a half-written model."""
    base = Path(cache_dir) if cache_dir is not None else _default_cache_dir()
    suffix = "".join(f"-{k}={v}" for k, v in sorted(kw.items()))
    target = base / f"{kind}-seed{seed}{suffix}"
    with _lock:
        if (target / ".complete").exists():
            return target
        base.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=base))
        try:
            build_tiny_model(kind, scratch, seed, **kw)
            (scratch / ".complete").touch()
            try:
                scratch.rename(target)
            except OSError:  # another process won the race; its model is identical
                if not (target / ".complete").exists():
                    raise
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return target
