"""How close does the OpenAI backend get to ideal concurrency?

1,000 single-sample requests against the local fake server with a fixed 200 ms latency and no
failures, at concurrency 32. The ideal is requests / concurrency * latency; the ratio to it
shows the backend's own overhead (event loop, client, result queue). Target: <= 1.25.

    python benchmarks/bench_openai.py [--requests 1000] [--concurrency 32] [--latency 0.2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fake_openai import FakeOpenAIServer, expected_text  # noqa: E402
from monoculture.backends import create_backend  # noqa: E402
from monoculture.backends.base import Job  # noqa: E402
from monoculture.study import ModelSpec, Sampling  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--latency", type=float, default=0.2)
    args = ap.parse_args()

    sampling = Sampling(seed=1, temperature=0.7, max_tokens=32)
    jobs = [
        Job(
            messages=[{"role": "user", "content": f"benchmark prompt {i}"}], sample_indices=[0], keys=[f"k{i}"], sampling=sampling
        )
        for i in range(args.requests)
    ]
    with FakeOpenAIServer(latency=args.latency) as server:
        spec = ModelSpec(
            name="bench",
            backend="openai",
            model="fake",
            params={
                "base_url": server.base_url,
                "api_key_env": None,
                "concurrency": args.concurrency,
                "n_native": False,
                "timeout": 30,
            },
        )
        with create_backend(spec) as backend:
            # One request first so that client construction is not billed to the run.
            list(
                backend.generate(
                    [Job(messages=[{"role": "user", "content": "warm-up"}], sample_indices=[0], keys=["w"], sampling=sampling)]
                )
            )
            server.reset_counts()
            t0 = time.perf_counter()
            results = list(backend.generate(jobs))
            elapsed = time.perf_counter() - t0

    failed = [r for r in results if not r.ok]
    wrong = sum(
        1 for r, j in zip(sorted(results, key=lambda r: int(r.key[1:])), jobs) if r.ok and r.text != expected_text(j.messages, 1)
    )
    ideal = args.requests / args.concurrency * args.latency
    ratio = elapsed / ideal
    print(
        f"requests:     {args.requests} (server saw {server.counts['requests']}), concurrency {args.concurrency}, latency {args.latency * 1000:.0f} ms"
    )
    print(f"results:      {len(results)} ({len(failed)} failed, {wrong} wrong text)")
    print(f"elapsed:      {elapsed:.3f} s")
    print(f"ideal:        {ideal:.3f} s")
    print(f"ratio:        {ratio:.3f} (target <= 1.25)")
    print(f"throughput:   {len(results) / elapsed:.1f} req/s")
    ok = len(results) == args.requests and not failed and not wrong and ratio <= 1.25
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
