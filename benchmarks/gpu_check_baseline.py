"""Bare vLLM on the GPU check's prompts: the figure monoculture's throughput is compared with.

One model per invocation (a fresh process, so each model has the GPU to itself): load it, render
every prompt with the tokenizer's chat template and encode it without special tokens (what
monoculture's ``render_chat``/``encode_prompt`` do for a model with a template), then one
``LLM.generate`` call with one request of ``n = k`` samples per prompt, each with its own seed,
as monoculture's vllm backend sends them (``n_native``). The same engine arguments
(dtype auto, seed 0, max_model_len, max_num_seqs, gpu_memory_utilization) and sampling parameters (temperature,
top_p, max_tokens). No warm-up call on either side: monoculture makes one call per model too.
Nothing from monoculture is imported, so this measures vLLM alone.

    python benchmarks/gpu_check_baseline.py --model DIR --prompts prompts.json --samples 5 \\
        --max-tokens 256 --temperature 0.8 --top-p 0.95 --json out.json

``prompts.json`` is a list of chats (lists of ``{"role", "content"}``); the tokens generated, the
call's wall time and tokens per second are printed and written to ``--json``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--name", help="label for the output (default: the folder's name)")
    ap.add_argument("--prompts", type=Path, required=True)
    ap.add_argument("--samples", type=int, default=5)
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--top-p", type=float, default=0.95)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--gpu-memory-utilization", type=float, default=0.9)
    ap.add_argument("--max-model-len", type=int)
    ap.add_argument("--max-num-seqs", type=int)
    ap.add_argument("--enforce-eager", action="store_true")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)

    from vllm import LLM, SamplingParams

    chats = json.loads(a.prompts.read_text())
    engine = {
        "model": a.model,
        "dtype": "auto",
        "gpu_memory_utilization": a.gpu_memory_utilization,
        "tensor_parallel_size": 1,
        "seed": 0,
        "trust_remote_code": False,
    }
    if a.max_model_len:
        engine["max_model_len"] = a.max_model_len
    if a.max_num_seqs:
        engine["max_num_seqs"] = a.max_num_seqs
    if a.enforce_eager:
        engine["enforce_eager"] = True
    t0 = time.perf_counter()
    llm = LLM(**engine)
    load_s = time.perf_counter() - t0
    tok = llm.get_tokenizer()
    texts = [tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in chats]
    prompts = [{"prompt_token_ids": list(tok(t, add_special_tokens=False)["input_ids"])} for t in texts]
    rng = random.Random(a.seed)
    params = [
        SamplingParams(n=a.samples, temperature=a.temperature, top_p=a.top_p, max_tokens=a.max_tokens, seed=rng.getrandbits(63))
        for _ in prompts
    ]
    t0 = time.perf_counter()
    outs = llm.generate(prompts, params, use_tqdm=False)
    gen_s = time.perf_counter() - t0
    tokens = sum(len(c.token_ids) for o in outs for c in o.outputs)
    answers = sum(len(o.outputs) for o in outs)
    res = {
        "model": a.name or Path(a.model).name,
        "requests": len(prompts),
        "answers": answers,
        "prompt_tokens": sum(len(p["prompt_token_ids"]) for p in prompts),
        "completion_tokens": tokens,
        "load_s": round(load_s, 2),
        "generate_s": round(gen_s, 3),
        "tokens_per_s": round(tokens / gen_s, 1) if gen_s > 0 else None,
    }
    print(
        f"bare vLLM {res['model']}: {answers} answers, {tokens} tokens in {gen_s:.2f} s = {res['tokens_per_s']} tok/s "
        f"(load {load_s:.1f} s)",
        flush=True,
    )
    if a.json:
        a.json.write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":  # vLLM starts worker processes by spawning: the guard keeps them from re-running this
    sys.exit(main())
