#!/usr/bin/env bash
# The GPU check: monoculture's vllm path on three models of real size, timed against bare vLLM.
#
#   bash benchmarks/gpu_check.sh                       # on a machine with one large GPU
#
# 1. install: vllm for $PYTHON if it is not importable (pip install vllm, or from a folder of
#    wheels: MONOCULTURE_WHEELS=/path -> pip install --no-index --find-links /path), and
#    monoculture itself (pip install -e the repository) if it is not;
# 2. models: the shapes of Qwen2.5-7B-Instruct, Llama-3.1-8B-Instruct and Mistral-7B-Instruct-v0.3
#    from their published configs, random bf16 weights, a tokenizer trained on the spot
#    (benchmarks/gpu_check_models.py; no model hub needed; about 46 GB written to $WORK_DIR, kept
#    for a rerun);
# 3. study: a study file of the three (backend vllm, 20 open-ended prompts, k = 5, max_tokens 256,
#    temperature 0.8, top_p 0.95, tfidf embedder), run by `monoculture study` in a fresh store:
#    every phase (run, measure, report) with its wall time;
# 4. baseline: bare vLLM on the same chats, engine arguments and sampling parameters, one fresh
#    process per model (benchmarks/gpu_check_baseline.py);
# 5. summary: generation throughput per model (tokens/s, load excluded), monoculture beside bare
#    vLLM and the ratio (goal: at least 0.9), the phases' and steps' times; summary.json;
# 6. Ray + vLLM (RAY=1): one model (RAY_MODEL) through `monoculture run` with executor kind ray
#    (Ray Data's vLLMEngineProcessorConfig on a local one-GPU Ray instance) in a store of its own,
#    against that model's bare vLLM run: tokens/s with engine load included on both sides, goal at
#    least 0.9 (benchmarks/gpu_check_ray.py; ray.json). Skipped, with the reason, when ray[data,llm]
#    cannot be installed or less than RAY_MIN_S of the budget is left.
#
# Settings (environment): PYTHON (python3), OUT (output folder; ./gpu-check-out), WORK_DIR (models;
# ${TMPDIR:-/tmp}/monoculture-gpu-check), SCALE (real | tiny: 2-layer models for a CPU smoke run),
# PROMPTS (20), SAMPLES (5), MAX_TOKENS (256), GPU_MEMORY_UTILIZATION (0.9), MAX_MODEL_LEN (4096),
# MAX_NUM_SEQS (128: room for all 100 answers at once, and fewer CUDA graphs to capture at each
# load than vLLM's default), ENFORCE_EAGER (0), BUDGET_S (wall-clock limit of the whole check, 590), MONOCULTURE_WHEELS,
# KEEP_MODELS (1: keep the built models for a rerun; 0: delete them at the end), RAY (1: step 6;
# 0: skip it), RAY_MODEL (qwen2.5-7b), RAY_MIN_S (150: the budget step 6 needs to start).
# Exit status: 0 when every step ran and the goal is met (step 6: its own goal too, when it runs) (always at SCALE=tiny, where the ratio
# is no goal's figure), 4 when the goal is missed, 2 when vllm cannot be installed, 124 when the
# budget ran out, else the failing step's status.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
PY="${PYTHON:-python3}"
SCALE="${SCALE:-real}"
PROMPTS="${PROMPTS:-20}"
SAMPLES="${SAMPLES:-5}"
MAX_TOKENS="${MAX_TOKENS:-256}"
TEMPERATURE=0.8
TOP_P=0.95
GPU_UTIL="${GPU_MEMORY_UTILIZATION:-0.9}"
MAX_MODEL_LEN="${MAX_MODEL_LEN:-4096}"
MAX_NUM_SEQS="${MAX_NUM_SEQS:-128}"
ENFORCE_EAGER="${ENFORCE_EAGER:-0}"
BUDGET_S="${BUDGET_S:-590}"
KEEP_MODELS="${KEEP_MODELS:-1}"
RAY="${RAY:-1}"
RAY_MODEL="${RAY_MODEL:-qwen2.5-7b}"
RAY_MIN_S="${RAY_MIN_S:-150}"
OUTDIR="${OUT:-$PWD/gpu-check-out}"
WORK="${WORK_DIR:-${TMPDIR:-/tmp}/monoculture-gpu-check}"
MODELS=(qwen2.5-7b llama3.1-8b mistral-7b-v0.3)

case "$SCALE" in real | tiny) ;; *)
  echo "error: SCALE=$SCALE: use real or tiny" >&2
  exit 2
  ;;
esac
mkdir -p "$OUTDIR" "$WORK"
OUTDIR="$(cd "$OUTDIR" && pwd)"
WORK="$(cd "$WORK" && pwd)"
exec > >(tee "$OUTDIR/gpu_check.log") 2>&1

# no hub, no telemetry: everything this check loads is local
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1
export COLUMNS=200 # monoculture's rich console: one phase per line, unwrapped, for the summary to read
export PYTHONUNBUFFERED=1

START=$(date +%s)
DEADLINE=$((START + BUDGET_S))
STEPS="$OUTDIR/steps.tsv"
: >"$STEPS"
STORE="$OUTDIR/gpu-check.duckdb"
STUDY="$OUTDIR/gpu-check.yaml"

summary() {
  "$PY" "$HERE/gpu_check_report.py" summary --store "$STORE" --study gpu-check --baseline "$OUTDIR/baseline" \
    --study-log "$OUTDIR/study.log" --steps "$STEPS" --json "$OUTDIR/summary.json" --scale "$SCALE" \
    --settings "{\"scale\": \"$SCALE\", \"prompts\": $PROMPTS, \"samples\": $SAMPLES, \"max_tokens\": $MAX_TOKENS, \"temperature\": $TEMPERATURE, \"top_p\": $TOP_P, \"gpu_memory_utilization\": $GPU_UTIL, \"max_model_len\": $MAX_MODEL_LEN, \"max_num_seqs\": $MAX_NUM_SEQS, \"enforce_eager\": $ENFORCE_EAGER}" ||
    echo "(no summary: gpu_check_report.py failed)"
}

# step NAME CMD...: run CMD under what is left of the budget, record its time and status; a
# failing step prints the summary of what ran and ends the check with the step's status.
step() {
  local name="$1" left rc t0 ms
  shift
  left=$((DEADLINE - $(date +%s)))
  if ((left < 5)); then
    echo "error: the ${BUDGET_S} s budget ran out before step $name" >&2
    summary
    exit 124
  fi
  echo
  echo "== $name (budget left: ${left} s)"
  t0=$(date +%s%N)
  rc=0
  timeout --kill-after=20 "$left" "$@" || rc=$?
  ms=$((($(date +%s%N) - t0) / 1000000))
  printf '%s\t%d.%03d\t%s\n' "$name" $((ms / 1000)) $((ms % 1000)) "$rc" >>"$STEPS"
  if ((rc != 0)); then
    if ((rc == 124 || rc == 137)); then
      echo "error: step $name stopped: the ${BUDGET_S} s budget ran out (BUDGET_S to change it)" >&2
    else
      echo "error: step $name failed (exit $rc); its output is above and in $OUTDIR/gpu_check.log" >&2
    fi
    summary
    exit "$rc"
  fi
}

echo "GPU check: scale $SCALE, ${#MODELS[@]} models x $PROMPTS prompts x k = $SAMPLES, max_tokens $MAX_TOKENS; python $PY"
echo "output: $OUTDIR; models: $WORK; budget ${BUDGET_S} s"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "(no nvidia-smi)"

# -- 1. install ------------------------------------------------------------------------------------
install() {
  local PIP_FROM=()
  if [[ -n "${MONOCULTURE_WHEELS:-}" ]]; then
    PIP_FROM=(--no-index --find-links "$MONOCULTURE_WHEELS")
  fi
  if "$PY" -c 'import vllm' 2>/dev/null; then
    echo "vllm $("$PY" -c 'import vllm; print(vllm.__version__)' 2>/dev/null) is installed"
  else
    echo "vllm is not installed for $PY: pip install vllm ${PIP_FROM[*]}"
    if ! "$PY" -m pip install --retries 1 --timeout 20 "${PIP_FROM[@]}" vllm; then
      cat >&2 <<EOF
error: could not install vllm (no network here?). Either install it beforehand for the python this
       check uses (PYTHON=/path/to/python bash benchmarks/gpu_check.sh), or download vllm and its
       dependencies as wheels on a machine with network and the same Python and platform
       (pip download vllm -d wheels) and give that folder: MONOCULTURE_WHEELS=/path/to/wheels
       bash benchmarks/gpu_check.sh (pip install --no-index --find-links).
EOF
      return 2
    fi
  fi
  if ! "$PY" -c 'import monoculture' 2>/dev/null; then
    echo "monoculture is not installed for $PY: pip install -e $REPO"
    "$PY" -m pip install --retries 1 --timeout 20 "${PIP_FROM[@]}" -e "$REPO" ||
      "$PY" -m pip install --no-build-isolation --retries 1 --timeout 20 "${PIP_FROM[@]}" -e "$REPO" || {
      echo "error: could not install monoculture's dependencies; install them as vllm above (MONOCULTURE_WHEELS)" >&2
      return 2
    }
  fi
  if [[ "$RAY" == 1 ]] && ! "$PY" -c 'import ray, ray.data.llm; assert ray.__version__.startswith("2.60.")' 2>/dev/null; then
    echo "ray[data,llm] 2.60 is not installed for $PY: pip install 'ray[data,llm]==2.60.*' ${PIP_FROM[*]}"
    "$PY" -m pip install --retries 1 --timeout 20 "${PIP_FROM[@]}" 'ray[data,llm]==2.60.*' ||
      echo "(could not install ray[data,llm] 2.60: the Ray + vLLM step will be skipped)"
  fi
  "$PY" -c 'import vllm, torch, monoculture; print(f"vllm {vllm.__version__}, torch {torch.__version__}, cuda {torch.cuda.is_available()}")'
}
export -f install # timeout runs commands, not functions: a child bash runs it
export PY REPO RAY
step install bash -c install

# -- 2. models -------------------------------------------------------------------------------------
step models "$PY" "$HERE/gpu_check_models.py" "$WORK/$SCALE" --scale "$SCALE" --json "$OUTDIR/models.json"

# -- 3. the study ----------------------------------------------------------------------------------
eager=""
if [[ "$ENFORCE_EAGER" == 1 ]]; then eager=", enforce_eager: true"; fi
params="{gpu_memory_utilization: $GPU_UTIL, max_model_len: $MAX_MODEL_LEN, max_num_seqs: $MAX_NUM_SEQS$eager}"
cat >"$STUDY" <<EOF
# written by benchmarks/gpu_check.sh: random-weight models of real shapes (scale $SCALE)
name: gpu-check
store: gpu-check.duckdb
models:
  - {name: qwen2.5-7b, backend: vllm, model: "$WORK/$SCALE/qwen2.5-7b", params: $params,
     attributes: {family: qwen, organisation: Alibaba, country: CN, open_weights: true}}
  - {name: llama3.1-8b, backend: vllm, model: "$WORK/$SCALE/llama3.1-8b", params: $params,
     attributes: {family: llama, organisation: Meta, country: US, open_weights: true}}
  - {name: mistral-7b-v0.3, backend: vllm, model: "$WORK/$SCALE/mistral-7b-v0.3", params: $params,
     attributes: {family: mistral, organisation: Mistral AI, country: FR, open_weights: true}}
suites:
  - {name: open-ended, limit: $PROMPTS}
samples: $SAMPLES
sampling: {temperature: $TEMPERATURE, top_p: $TOP_P, max_tokens: $MAX_TOKENS, seed: 0}
measure: {embedder: tfidf, groups: [family, country], what_if_removed: [qwen], B: 200, seed: 0}
report: {path: report.html}
EOF
rm -f "$STORE" "$STORE.wal" "$OUTDIR/report.html"
rm -rf "$OUTDIR/baseline"
mkdir -p "$OUTDIR/baseline"
step check "$PY" -m monoculture.cli study "$STUDY" --check
# the study's own output goes to study.log as well, where the summary reads each phase's time
step study bash -c '"$0" -m monoculture.cli study "$1" --quiet 2>&1 | tee "$2"; exit "${PIPESTATUS[0]}"' "$PY" "$STUDY" "$OUTDIR/study.log"

# -- 4. bare vLLM ----------------------------------------------------------------------------------
step prompts "$PY" "$HERE/gpu_check_report.py" prompts "$STUDY" "$OUTDIR/prompts.json"
for m in "${MODELS[@]}"; do
  extra=()
  if [[ "$ENFORCE_EAGER" == 1 ]]; then extra=(--enforce-eager); fi
  step "baseline $m" "$PY" "$HERE/gpu_check_baseline.py" --model "$WORK/$SCALE/$m" --name "$m" \
    --prompts "$OUTDIR/prompts.json" --samples "$SAMPLES" --max-tokens "$MAX_TOKENS" --temperature "$TEMPERATURE" \
    --top-p "$TOP_P" --gpu-memory-utilization "$GPU_UTIL" --max-model-len "$MAX_MODEL_LEN" --max-num-seqs "$MAX_NUM_SEQS" "${extra[@]}" \
    --json "$OUTDIR/baseline/$m.json"
done

# -- 5. summary ------------------------------------------------------------------------------------
summary
goal=0
if [[ "$SCALE" == real ]] && ! "$PY" -c 'import json, sys; sys.exit(0 if json.load(open(sys.argv[1]))["goal_met"] else 1)' "$OUTDIR/summary.json"; then
  goal=4
fi

# -- 6. Ray + vLLM ---------------------------------------------------------------------------------
ray_ok() { "$PY" -c 'import ray, ray.data.llm; assert ray.__version__.startswith("2.60.")' 2>/dev/null; }
if [[ "$RAY" != 1 ]]; then
  echo "(Ray + vLLM step not run: RAY=$RAY)"
elif ! ray_ok; then
  echo "(Ray + vLLM step skipped: ray[data,llm] 2.60 is not importable for $PY)"
elif ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  echo "(Ray + vLLM step skipped: no CUDA GPU; the Ray stage asks for one)"
elif (($(date +%s) + RAY_MIN_S > DEADLINE)); then
  echo "(Ray + vLLM step skipped: $((DEADLINE - $(date +%s))) s of the budget left, it needs RAY_MIN_S=$RAY_MIN_S; raise BUDGET_S)"
else
  RAY_STORE="$OUTDIR/gpu-check-ray.duckdb"
  RAY_STUDY="$OUTDIR/gpu-check-ray.yaml"
  rm -rf "$RAY_STORE" "$RAY_STORE.wal" "$RAY_STORE.shards"
  # the same model, suite, samples and sampling as the study above; one engine on the one GPU
  "$PY" - "$STUDY" "$RAY_STUDY" "$RAY_MODEL" <<'PYEOF'
import sys, yaml
study, out, name = sys.argv[1:4]
d = yaml.safe_load(open(study))
d["name"], d["store"] = "gpu-check-ray", "gpu-check-ray.duckdb"
d["models"] = [m for m in d["models"] if m["name"] == name]
if len(d["models"]) != 1:
    sys.exit(f"RAY_MODEL={name}: not a model of {study}")
d["executor"] = {"kind": "ray", "concurrency": 1, "batch_size": 16}
d.pop("measure", None)
d.pop("report", None)
yaml.safe_dump(d, open(out, "w"), sort_keys=False)
PYEOF
  step "ray $RAY_MODEL" "$PY" "$HERE/gpu_check_ray.py" "$RAY_STUDY" --baseline "$OUTDIR/baseline/$RAY_MODEL.json" \
    --json "$OUTDIR/ray.json" --goal 0.9
fi
if [[ "$KEEP_MODELS" == 0 ]]; then rm -rf "${WORK:?}/$SCALE"; fi
exit "$goal"
