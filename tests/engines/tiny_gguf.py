"""A tiny GGUF for the llama.cpp engine test, written with the ``gguf`` package from the tiny
Qwen2 checkpoint of tests/tiny_models.py (no model hub, no llama.cpp convert script: neither
the llama-cpp-python wheel nor the gguf package ships one).

The file holds what llama.cpp reads for the ``qwen2`` architecture: the hyperparameters, the
byte-level BPE vocabulary and merges (``tokenizer.ggml.model = gpt2``, pre-tokenizer ``gpt-2``: the GPT-2 regex
the tiny tokenizer was trained with), the special tokens and the chat template, and every weight
in float32 under llama.cpp's tensor names. Qwen2 uses the NeoX rotary layout, as the HF weights
are stored, so unlike Llama no q/k permutation is needed.

``write_tiny_gguf(hf_dir, out_path) -> Path``
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

_LAYER_TENSORS = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.v_proj.bias": "attn_v.bias",
    "self_attn.o_proj.weight": "attn_output.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}


def _tensor_name(hf: str) -> str:
    if hf == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf == "model.norm.weight":
        return "output_norm.weight"
    if hf == "lm_head.weight":
        return "output.weight"
    prefix, _, rest = hf.partition(".layers.")
    layer, _, name = rest.partition(".")
    if prefix != "model" or name not in _LAYER_TENSORS:
        raise ValueError(f"no GGUF name for tensor {hf!r}")
    return f"blk.{int(layer)}.{_LAYER_TENSORS[name]}"


def write_tiny_gguf(hf_dir: str | Path, out_path: str | Path) -> Path:
    import gguf
    from safetensors.numpy import load_file

    hf_dir, out_path = Path(hf_dir), Path(out_path)
    cfg = json.loads((hf_dir / "config.json").read_text())
    if cfg.get("model_type") != "qwen2":
        raise ValueError(f"write_tiny_gguf writes qwen2 only, got {cfg.get('model_type')!r}")
    tok = json.loads((hf_dir / "tokenizer.json").read_text())
    tok_cfg = json.loads((hf_dir / "tokenizer_config.json").read_text())
    chat_template = tok_cfg.get("chat_template")
    if chat_template is None and (hf_dir / "chat_template.jinja").is_file():
        chat_template = (hf_dir / "chat_template.jinja").read_text()

    # vocabulary: BPE tokens, then the added (special) tokens, padded to the embedding's rows
    n_vocab = int(cfg["vocab_size"])
    tokens = [f"[PAD{i}]" for i in range(n_vocab)]
    types = [gguf.TokenType.UNUSED] * n_vocab
    for text, i in tok["model"]["vocab"].items():
        tokens[i], types[i] = text, gguf.TokenType.NORMAL
    special = {}
    for added in tok["added_tokens"]:
        i = added["id"]
        tokens[i] = added["content"]
        types[i] = gguf.TokenType.CONTROL if added.get("special") else gguf.TokenType.USER_DEFINED
        special[added["content"]] = i
    merges = [m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]]

    def token_id(field: str) -> int | None:
        v = tok_cfg.get(field)
        v = v.get("content") if isinstance(v, dict) else v
        return special.get(v) if v else None

    w = gguf.GGUFWriter(str(out_path), "qwen2")
    w.add_name("tiny-qwen2")
    w.add_context_length(int(cfg.get("max_position_embeddings", 512)))
    w.add_embedding_length(int(cfg["hidden_size"]))
    w.add_block_count(int(cfg["num_hidden_layers"]))
    w.add_feed_forward_length(int(cfg["intermediate_size"]))
    w.add_head_count(int(cfg["num_attention_heads"]))
    w.add_head_count_kv(int(cfg["num_key_value_heads"]))
    rope = cfg.get("rope_parameters") or {}
    w.add_rope_freq_base(float(rope.get("rope_theta", cfg.get("rope_theta", 10000.0))))
    w.add_layer_norm_rms_eps(float(cfg["rms_norm_eps"]))
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2")  # llama.cpp's name for the GPT-2 regex
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    for field, add in (("eos_token", w.add_eos_token_id), ("pad_token", w.add_pad_token_id), ("bos_token", w.add_bos_token_id)):
        i = token_id(field)
        if i is not None:
            add(i)
    w.add_add_bos_token(False)  # ChatML has no BOS, as the HF tokenizer adds none
    if chat_template:
        w.add_chat_template(chat_template)
    for name, array in sorted(load_file(str(hf_dir / "model.safetensors")).items()):
        w.add_tensor(_tensor_name(name), np.ascontiguousarray(array, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out_path
