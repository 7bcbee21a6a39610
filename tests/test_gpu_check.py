"""benchmarks/gpu_check.sh's parts that run without a GPU: the three architectures have their
published parameter counts; the tiny models load in transformers with every weight named as it
expects, a tokenizer of exactly the config's vocabulary (specials at their real ids) and the
family's chat template; the summary reads monoculture's throughput from the store as described."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def test_real_shapes_have_the_published_parameter_counts():
    g = load("gpu_check_models")
    for name, published in g.PUBLISHED_PARAMS.items():
        n = g.n_params(g.tensor_shapes(g.config_for(name, "real")))
        assert abs(n - published) < 0.005 * published, (name, n)
    # the shapes themselves, as the published configs give them
    qwen, llama, mistral = (g.config_for(n, "real") for n in ("qwen2.5-7b", "llama3.1-8b", "mistral-7b-v0.3"))
    assert (qwen["hidden_size"], qwen["num_hidden_layers"], qwen["num_key_value_heads"]) == (3584, 28, 4)
    assert qwen["vocab_size"] == 152064
    assert (llama["intermediate_size"], llama["rope_theta"], llama["vocab_size"]) == (14336, 500000.0, 128256)
    assert (mistral["num_attention_heads"], mistral["rope_theta"], mistral["vocab_size"]) == (32, 1000000.0, 32768)
    assert "model.layers.0.self_attn.q_proj.bias" in g.tensor_shapes(qwen)
    assert "model.layers.0.self_attn.q_proj.bias" not in g.tensor_shapes(llama)


def test_real_shapes_are_the_weights_transformers_builds():
    """The checkpoint's names and shapes at real size, against the model transformers builds
    from the same config (on the meta device: no memory, no weights)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from transformers import AutoConfig, AutoModelForCausalLM

    g = load("gpu_check_models")
    for name in g.ARCHS:
        cfg = g.config_for(name, "real")
        config = AutoConfig.for_model(cfg["model_type"], **{k: v for k, v in cfg.items() if k != "model_type"})
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
        assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == g.tensor_shapes(cfg), name


@pytest.mark.slow
def test_tiny_models_load_and_chat_in_transformers(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    pytest.importorskip("safetensors")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    g = load("gpu_check_models")
    assert g.main([str(tmp_path), "--scale", "tiny", "--device", "cpu", "--json", str(tmp_path / "built.json")]) == 0
    built = json.loads((tmp_path / "built.json").read_text())
    assert [b["name"] for b in built] == list(g.ARCHS)
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a colour."}]
    first = {"qwen2.5-7b": "<|im_start|>", "llama3.1-8b": "<|begin_of_text|>", "mistral-7b-v0.3": "<s>"}
    for name in g.ARCHS:
        folder = tmp_path / name
        model, info = AutoModelForCausalLM.from_pretrained(str(folder), output_loading_info=True)
        assert not any(info.get(k) for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), (name, info)
        assert model.config.num_hidden_layers == 2 and model.config.hidden_size == 128
        tok = AutoTokenizer.from_pretrained(str(folder))
        vocab = g.ARCHS[name]["vocab_size"]
        assert len(tok) == vocab == model.config.vocab_size
        for t, i in g.TOKENIZERS[name]["special"].items():
            assert tok.convert_tokens_to_ids(t) == i
        text = tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert ids[0] == tok.convert_tokens_to_ids(first[name])
        assert ids.count(ids[0]) == (3 if name == "qwen2.5-7b" else 1)  # Qwen's starts every turn
        assert "Be brief." in text and "Name a colour." in tok.decode(ids)
        tok.decode([vocab - 1, vocab // 2, 300])  # any id the model samples decodes
        out = model.generate(torch.tensor([ids]), max_new_tokens=3, do_sample=True)
        assert out.shape[1] == len(ids) + 3
    # a second build with the same settings keeps the folders
    assert g.main([str(tmp_path), "--scale", "tiny", "--device", "cpu", "--json", str(tmp_path / "again.json")]) == 0
    assert all(b["reused"] for b in json.loads((tmp_path / "again.json").read_text()))


def test_summary_reads_throughput_from_the_store(tmp_path, capsys):
    from monoculture.store import Store

    r = load("gpu_check_report")
    store = tmp_path / "s.duckdb"
    rows = []
    # model a: one generate call of 2.0 s ending at t = 100, rows written until t = 100.5
    for i in range(4):
        rows.append({"key": f"a{i}", "model": "a", "prompt_key": "p", "sample_index": i, "text": "x", "completion_tokens": 50})
        rows[-1].update(latency_s=2.0, created_at=100.0 + (0.5 if i == 3 else 0.0), source="run", attempts=1)
    rows.append({"key": "other", "model": "z", "prompt_key": "p", "sample_index": 0, "text": "x", "completion_tokens": 9})
    rows[-1].update(latency_s=1.0, created_at=5.0, source="run", attempts=1)
    with Store(store) as st:
        st.register_study("gpu-check", None, {}, ["a"], ["p"])
        st.write_generations(rows)
    mono = r.monoculture_throughput(store, "gpu-check")
    assert list(mono) == ["a"]  # a model outside the study is not counted
    assert mono["a"]["completion_tokens"] == 200 and mono["a"]["span_s"] == 2.5 and mono["a"]["tokens_per_s"] == 80.0
    assert mono["a"]["engine_tokens_per_s"] == 100.0
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "a.json").write_text(json.dumps({"model": "a", "completion_tokens": 200, "tokens_per_s": 100.0}))
    log = tmp_path / "study.log"
    log.write_text("run: 4 generated, 0 already in the store, 0 failed (12.5 s)\nmeasure: 4 embedded; stored as x (0.6 s)\n")
    (tmp_path / "steps.tsv").write_text("study\t14.250\t0\n")
    out = tmp_path / "summary.json"
    argv = ["summary", "--store", str(store), "--study", "gpu-check", "--baseline", str(tmp_path / "base")]
    argv += ["--study-log", str(log), "--steps", str(tmp_path / "steps.tsv"), "--json", str(out)]
    assert r.main(argv) == 0
    s = json.loads(out.read_text())
    assert s["models"][0]["ratio"] == 0.8 and s["worst_ratio"] == 0.8 and not s["goal_met"] and s["complete"]
    assert s["phases_s"] == {"run": 12.5, "measure": 0.6} and s["total_s"] == 14.2
    assert "NOT met" in capsys.readouterr().out
