#!/usr/bin/env bash
# Rebuild tests/data/store_v0_1_0.duckdb.gz: a small store written by release 0.1.0 (commit
# 1a61536), the last one that kept results as JSON inside measure_runs. The migration tests
# open it with today's code. Gzipped because a DuckDB file is at least a few 256 KiB blocks
# (3.3 MB here, 22 KB compressed); the tests unpack it into a temporary folder. Run from the repository root: bash tests/data/make_store_v0_1_0.sh
set -euo pipefail
root=$(pwd)
old=$(mktemp -d)/old
git worktree add --detach "$old" 1a61536 >/dev/null
trap 'git worktree remove --force "$old"' EXIT
work=$(mktemp -d)
python - "$work/answers.jsonl" <<'PY'
import json, sys
topics = ["the sea", "bread", "winter", "chess"]
styles = {
    "poet": "O {t}, you shine and sing; verse {i} of my little song about {t}.",
    "lister": "1. {t} facts\n2. more about {t}\n3. item {i}",
    "pundit": "In my view, {t} matters because people need it (take {i}).",
}
with open(sys.argv[1], "w", encoding="utf-8") as fh:
    for model, fmt in styles.items():
        for p, t in enumerate(topics):
            for i in range(2):
                fh.write(json.dumps({"model": model, "prompt_id": f"p{p}", "prompt": f"Tell me about {t}.",
                                     "sample_index": i, "text": fmt.format(t=t, i=i)}) + "\n")
PY
out="$work/store_v0_1_0.duckdb"
cd "$old"
PYTHONPATH="$old/src" python -m monoculture.cli import jsonl "$work/answers.jsonl" --store "$out"
PYTHONPATH="$old/src" python -m monoculture.cli measure --store "$out" --embedder tfidf -B 50 --json > /dev/null
PYTHONPATH="$old/src" python -m monoculture.cli measure --store "$out" --embedder tfidf -B 50 --raw --json > /dev/null
gzip -9 -n -c "$out" > "$root/tests/data/store_v0_1_0.duckdb.gz"
ls -l "$root/tests/data/store_v0_1_0.duckdb.gz"
