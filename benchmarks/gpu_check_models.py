"""Build the GPU check's three models: the shapes of Qwen2.5-7B-Instruct, Llama-3.1-8B-Instruct
and Mistral-7B-Instruct-v0.3 at their real sizes, random bf16 weights, and a tokenizer trained
here, because the machine that runs ``benchmarks/gpu_check.sh`` reaches no model hub.

Generation throughput depends on the shapes (layers, widths, heads, vocabulary), not on the
weights' values, so a random model of the real shape is timed as the real one would be. What
cannot be reproduced: answer lengths. A random model almost never emits its end-of-turn token,
so every answer runs to ``max_tokens``; the check compares monoculture with bare vLLM on the same
models, where both sides see the same lengths.

Each model folder is what ``vllm.LLM(model=folder)`` and ``transformers`` load: ``config.json``,
``generation_config.json``, safetensors shards with an index, and a byte-level BPE tokenizer
whose vocabulary has exactly the config's ``vocab_size`` entries (trained merges on the suites'
prompts and text made from them, then filler tokens), so any id the model can sample decodes,
and the embedding and output matrices keep their real size. The special tokens sit at their real
ids and the chat templates follow each family's published template (Qwen's ChatML with its
default system prompt, Llama 3.1's headers with its dated system turn, Mistral's [INST]), so
prompts have about their real length.

``--scale tiny`` builds the same three architectures shrunk (2 layers, hidden 128, head_dim 32,
real vocabularies) for a smoke run on a CPU.

    python benchmarks/gpu_check_models.py OUT_DIR [--scale real|tiny]

A folder already built with the same settings is kept (``.built`` holds their digest).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import re
import shutil
import sys
import time
from pathlib import Path

# The architectures, written from the published config.json of each model on the Hugging Face
# Hub (Qwen/Qwen2.5-7B-Instruct, meta-llama/Llama-3.1-8B-Instruct,
# mistralai/Mistral-7B-Instruct-v0.3), from memory: no hub was reachable when this was written.
# The parameter counts they give (7.62B, 8.03B, 7.25B) are the published ones; main() prints them.
ARCHS: dict[str, dict] = {
    "qwen2.5-7b": {
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "hidden_size": 3584,
        "intermediate_size": 18944,
        "num_hidden_layers": 28,
        "num_attention_heads": 28,
        "num_key_value_heads": 4,
        "max_position_embeddings": 32768,
        "rope_theta": 1000000.0,
        "rms_norm_eps": 1e-06,
        "vocab_size": 152064,
        "tie_word_embeddings": False,
        "hidden_act": "silu",
        "attention_dropout": 0.0,
        "sliding_window": 131072,
        "use_sliding_window": False,
        "max_window_layers": 28,
        "bos_token_id": 151643,
        "eos_token_id": 151645,
        "initializer_range": 0.02,
        "torch_dtype": "bfloat16",
        "use_cache": True,
    },
    "llama3.1-8b": {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "max_position_embeddings": 131072,
        "rope_theta": 500000.0,
        "rope_scaling": {
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
            "rope_type": "llama3",
        },
        "rms_norm_eps": 1e-05,
        "vocab_size": 128256,
        "tie_word_embeddings": False,
        "hidden_act": "silu",
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "pretraining_tp": 1,
        "bos_token_id": 128000,
        "eos_token_id": [128001, 128008, 128009],
        "initializer_range": 0.02,
        "torch_dtype": "bfloat16",
        "use_cache": True,
    },
    "mistral-7b-v0.3": {
        "architectures": ["MistralForCausalLM"],
        "model_type": "mistral",
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "max_position_embeddings": 32768,
        "rope_theta": 1000000.0,
        "rms_norm_eps": 1e-05,
        "vocab_size": 32768,
        "sliding_window": None,
        "tie_word_embeddings": False,
        "hidden_act": "silu",
        "attention_dropout": 0.0,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "initializer_range": 0.02,
        "torch_dtype": "bfloat16",
        "use_cache": True,
    },
}

#: The published parameter counts, to catch a shape written wrong (tolerance 0.5%).
PUBLISHED_PARAMS = {"qwen2.5-7b": 7.62e9, "llama3.1-8b": 8.03e9, "mistral-7b-v0.3": 7.25e9}

#: Shrunk for a CPU smoke run: the same architectures and vocabularies, 2 layers of width 128.
TINY = {"hidden_size": 128, "intermediate_size": 384, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2}

# Special tokens at their real ids, and each family's chat template (shortened to the parts a
# single- or multi-turn chat without tools uses).
QWEN_SPECIAL = {"<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645}
LLAMA_SPECIAL = {
    "<|begin_of_text|>": 128000,
    "<|end_of_text|>": 128001,
    "<|start_header_id|>": 128006,
    "<|end_header_id|>": 128007,
    "<|eom_id|>": 128008,
    "<|eot_id|>": 128009,
}
MISTRAL_SPECIAL = {"<unk>": 0, "<s>": 1, "</s>": 2, "[INST]": 3, "[/INST]": 4}

QWEN_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}{%- if not (message['role'] == 'system' and loop.first) %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
LLAMA_TEMPLATE = (
    "{{- bos_token }}"
    "{%- if messages[0]['role'] == 'system' %}{%- set system_message = messages[0]['content'] | trim %}"
    "{%- set messages = messages[1:] %}{%- else %}{%- set system_message = '' %}{%- endif %}"
    "{{- '<|start_header_id|>system<|end_header_id|>\\n\\n' }}"
    "{{- 'Cutting Knowledge Date: December 2023\\nToday Date: 26 Jul 2024\\n\\n' }}"
    "{{- system_message }}{{- '<|eot_id|>' }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)
MISTRAL_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}{%- set system_message = messages[0]['content'] %}"
    "{%- set messages = messages[1:] %}{%- else %}{%- set system_message = '' %}{%- endif %}"
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{%- if message['role'] == 'user' %}"
    "{%- if loop.first and system_message %}{{- '[INST] ' + system_message + '\\n\\n' + message['content'] + '[/INST]' }}"
    "{%- else %}{{- '[INST] ' + message['content'] + '[/INST]' }}{%- endif %}"
    "{%- elif message['role'] == 'assistant' %}{{- ' ' + message['content'] + eos_token }}{%- endif %}"
    "{%- endfor %}"
)

TOKENIZERS = {
    "qwen2.5-7b": {"special": QWEN_SPECIAL, "bos": None, "eos": "<|im_end|>", "pad": "<|endoftext|>", "template": QWEN_TEMPLATE},
    "llama3.1-8b": {
        "special": LLAMA_SPECIAL,
        "bos": "<|begin_of_text|>",
        "eos": "<|eot_id|>",
        "pad": None,
        "template": LLAMA_TEMPLATE,
    },
    "mistral-7b-v0.3": {"special": MISTRAL_SPECIAL, "bos": "<s>", "eos": "</s>", "pad": None, "template": MISTRAL_TEMPLATE},
}

#: Merges learnt from the corpus (at most; a small corpus gives fewer). The rest of the
#: vocabulary is filler, which the model can sample and the tokenizer decodes.
TRAINED_VOCAB = 8000
SHARD_BYTES = 4 * 1024**3


def config_for(name: str, scale: str) -> dict:
    cfg = dict(ARCHS[name])
    if scale == "tiny":
        cfg.update(TINY)
        cfg["head_dim"] = TINY["hidden_size"] // TINY["num_attention_heads"]
        if "max_window_layers" in cfg:
            cfg["max_window_layers"] = TINY["num_hidden_layers"]
    return cfg


def tensor_shapes(cfg: dict) -> dict[str, tuple[int, ...]]:
    """Every weight of the checkpoint, named as transformers and vLLM load Llama, Mistral and
    Qwen2 (the three share a layout; Qwen2 adds q/k/v biases)."""
    h, inter, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    heads, kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim") or h // heads
    qkv_bias = cfg["model_type"] == "qwen2" or bool(cfg.get("attention_bias"))
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (v, h)}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        shapes[p + "input_layernorm.weight"] = (h,)
        shapes[p + "self_attn.q_proj.weight"] = (heads * hd, h)
        shapes[p + "self_attn.k_proj.weight"] = (kv * hd, h)
        shapes[p + "self_attn.v_proj.weight"] = (kv * hd, h)
        if qkv_bias:
            shapes[p + "self_attn.q_proj.bias"] = (heads * hd,)
            shapes[p + "self_attn.k_proj.bias"] = (kv * hd,)
            shapes[p + "self_attn.v_proj.bias"] = (kv * hd,)
        shapes[p + "self_attn.o_proj.weight"] = (h, heads * hd)
        shapes[p + "post_attention_layernorm.weight"] = (h,)
        shapes[p + "mlp.gate_proj.weight"] = (inter, h)
        shapes[p + "mlp.up_proj.weight"] = (inter, h)
        shapes[p + "mlp.down_proj.weight"] = (h, inter)
    shapes["model.norm.weight"] = (h,)
    if not cfg.get("tie_word_embeddings"):
        shapes["lm_head.weight"] = (v, h)
    return shapes


def n_params(shapes: dict[str, tuple[int, ...]]) -> int:
    total = 0
    for s in shapes.values():
        n = 1
        for d in s:
            n *= d
        total += n
    return total


# -- weights -------------------------------------------------------------------------------------
def write_weights(folder: Path, cfg: dict, *, seed: int, device: str) -> int:
    """Random bf16 weights in safetensors shards of at most 4 GiB, one tensor made at a time (on
    the GPU when there is one: 8B normal draws take minutes on a CPU), so memory stays at one
    shard. Norm weights are ones, biases zeros, matrices N(0, 0.02) as at initialisation."""
    import torch
    from safetensors.torch import save_file

    shapes = tensor_shapes(cfg)
    gen = torch.Generator(device=device).manual_seed(seed)
    std = float(cfg.get("initializer_range", 0.02))
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, shape in shapes.items():
        nbytes = 2 * n_params({name: shape})
        if size and size + nbytes > SHARD_BYTES:
            shards.append({})
            size = 0
        if name.endswith("layernorm.weight") or name == "model.norm.weight":
            t = torch.ones(shape, dtype=torch.bfloat16)
        elif name.endswith(".bias"):
            t = torch.zeros(shape, dtype=torch.bfloat16)
        else:
            t = torch.empty(shape, dtype=torch.bfloat16, device=device).normal_(0.0, std, generator=gen).cpu()
        shards[-1][name] = t
        size += nbytes
    weight_map, total = {}, 0
    for i, shard in enumerate(shards, 1):
        fname = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(folder / fname), metadata={"format": "pt"})
        for name, t in shard.items():
            weight_map[name] = fname
            total += t.numel() * 2
        shard.clear()
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    return total


# -- tokenizer -----------------------------------------------------------------------------------
def corpus() -> list[str]:
    """The shipped suites' prompts, and text made from their words (sentences of shuffled words,
    numbers, punctuation), so the trained merges cover what the check's prompts contain."""
    import random

    from monoculture.suites import load_suite

    texts = []
    for suite in ("open-ended", "multilingual"):
        try:
            texts += [p.text for p in load_suite(suite)]
        except Exception as e:  # noqa: BLE001 - a suite that moved must not stop a benchmark; the prompts of the others suffice
            print(f"note: suite {suite} not read ({type(e).__name__}: {e})", file=sys.stderr)
    words = [w for t in texts for w in re.findall(r"\w+|[^\w\s]", t)]
    rng = random.Random(0)
    made = []
    for _ in range(4000):
        n = rng.randint(4, 30)
        made.append(" ".join(rng.choice(words) for _ in range(n)) + rng.choice([".", "!", "?", ",", "\n", " 1984.", ": 42"]))
    return texts + made


def _filler(taken: set[str]) -> itertools.chain:
    from tokenizers.pre_tokenizers import ByteLevel

    alphabet = sorted(ByteLevel.alphabet())
    return itertools.chain.from_iterable(
        ("".join(t) for t in itertools.product(alphabet, repeat=n) if "".join(t) not in taken) for n in (2, 3)
    )


def build_tokenizer(name: str, vocab_size: int, texts: list[str]):
    """A byte-level BPE tokenizer with exactly ``vocab_size`` ids: specials at their real ids,
    merges trained on ``texts``, filler tokens (2-3 bytes each, reachable by no merge) in the
    remaining ids, as a transformers fast tokenizer with the family's chat template."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    spec = TOKENIZERS[name]
    special: dict[str, int] = spec["special"]
    trainer = trainers.BpeTrainer(
        vocab_size=TRAINED_VOCAB, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    base = Tokenizer(models.BPE())
    base.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    base.train_from_iterator(texts, trainer)
    trained = json.loads(base.to_str())["model"]
    learnt = sorted(trained["vocab"], key=trained["vocab"].get)  # byte alphabet first, then merges in order
    reserved = set(special.values())
    free = (i for i in range(vocab_size) if i not in reserved)
    vocab: dict[str, int] = dict(special)
    for tok in learnt:
        vocab[tok] = next(free)
    fill = _filler(set(vocab))
    for i in free:
        vocab[next(fill)] = i
    assert len(vocab) == vocab_size and sorted(vocab.values()) == list(range(vocab_size))
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in trained["merges"]]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in special])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=spec["bos"],
        eos_token=spec["eos"],
        pad_token=spec["pad"],
        unk_token="<unk>" if "<unk>" in special else None,
        model_max_length=131072,
    )
    fast.chat_template = spec["template"]
    return fast


# -- folders -------------------------------------------------------------------------------------
def _settings(name: str, scale: str, seed: int) -> str:
    material = json.dumps([config_for(name, scale), TOKENIZERS[name], seed, TRAINED_VOCAB], sort_keys=True)
    return hashlib.sha256(material.encode()).hexdigest()


def is_built(out: Path, name: str, scale: str, seed: int) -> bool:
    marker = out / name / ".built"
    return marker.is_file() and marker.read_text().strip() == _settings(name, scale, seed)


def build(out: Path, name: str, scale: str, *, seed: int, device: str, texts: list[str] | None = None) -> dict:
    """Write one model's folder (skipped when ``.built`` says it holds these settings)."""
    cfg = config_for(name, scale)
    folder = out / name
    settings = _settings(name, scale, seed)
    marker = folder / ".built"
    shapes = tensor_shapes(cfg)
    info = {"name": name, "path": str(folder), "scale": scale, "params": n_params(shapes), "config": cfg}
    if is_built(out, name, scale, seed):
        info["seconds"] = 0.0
        info["reused"] = True
        return info
    t0 = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    marker.unlink(missing_ok=True)
    for old in folder.glob("*.safetensors"):
        old.unlink()
    (folder / "config.json").write_text(json.dumps({**cfg, "transformers_version": "4.44.0"}, indent=2) + "\n")
    eos = cfg["eos_token_id"]
    gen_cfg = {"bos_token_id": cfg["bos_token_id"], "eos_token_id": eos, "do_sample": True, "temperature": 0.7, "top_p": 0.9}
    (folder / "generation_config.json").write_text(json.dumps(gen_cfg, indent=2) + "\n")
    tok = build_tokenizer(name, cfg["vocab_size"], texts if texts is not None else corpus())
    tok.save_pretrained(str(folder))
    info["bytes"] = write_weights(folder, cfg, seed=seed, device=device)
    marker.write_text(settings + "\n")
    info["seconds"] = round(time.perf_counter() - t0, 1)
    info["reused"] = False
    return info


def _device(choice: str) -> str:
    if choice != "auto":
        return choice
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cpu"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path, help="folder to write one sub-folder per model into")
    ap.add_argument("--scale", choices=["real", "tiny"], default="real")
    ap.add_argument("--models", nargs="*", default=list(ARCHS), choices=list(ARCHS))
    ap.add_argument("--device", default="auto", help="where random weights are drawn: auto (cuda if present), cpu, cuda")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="also write what was built here")
    a = ap.parse_args(argv)
    device = _device(a.device)
    todo = [n for n in a.models if not is_built(a.out, n, a.scale, a.seed)]
    need = sum(2 * n_params(tensor_shapes(config_for(n, a.scale))) for n in todo)
    a.out.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(a.out).free + sum(f.stat().st_size for n in todo for f in (a.out / n).glob("*.safetensors"))
    if need + (2 << 30) > free:
        print(
            f"error: {a.out}: {need / 1e9:.1f} GB of weights to write, {free / 1e9:.1f} GB free; "
            "give a folder on a larger disk (WORK_DIR=... for gpu_check.sh)",
            file=sys.stderr,
        )
        return 2
    texts = corpus()
    built = []
    for name in a.models:
        info = build(a.out, name, a.scale, seed=a.seed, device=device, texts=texts)
        if a.scale == "real":
            want = PUBLISHED_PARAMS[name]
            if abs(info["params"] - want) > 0.005 * want:
                print(f"error: {name}: {info['params'] / 1e9:.3f}B parameters, published {want / 1e9:.2f}B", file=sys.stderr)
                return 1
        how = "kept (already built)" if info["reused"] else f"built in {info['seconds']:.1f} s on {device}"
        print(f"{name}: {info['params'] / 1e9:.3f}B parameters, {how} -> {info['path']}", flush=True)
        built.append({k: v for k, v in info.items() if k != "config"})
    if a.json:
        a.json.write_text(json.dumps(built, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
