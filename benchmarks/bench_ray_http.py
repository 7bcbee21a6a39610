"""Does generation on Ray scale with its workers? The HTTP path, 1 and 2 workers, vs the ideal.

A study of single-sample prompts runs through ``run --ray``'s own path (plan, Ray Data's
HttpRequestProcessorConfig, Parquet shards, merge) on a local Ray cluster, against the local
fake server with a fixed per-request latency and no failures, so the server is never the
bottleneck and throughput is latency-bound. Ray's HTTP stage awaits one request after another
within a batch, so one worker's ideal is 1 / latency requests per second and w workers' is
w / latency. Reported: the steady rate (the server's first to last request, which leaves out
Ray's start-up and actor creation) and the end-to-end rate, each against the ideal, and the
speed-up from 1 to 2 workers (target >= 1.8).

    python benchmarks/bench_ray_http.py [--requests 200] [--latency 0.1] [--batch 10]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import ray  # noqa: E402

from fake_openai import FakeOpenAIServer  # noqa: E402
from monoculture.collect import run_study  # noqa: E402
from monoculture.store import Store  # noqa: E402
from monoculture.study import ExecutorSection, load_study  # noqa: E402


class TimedServer(FakeOpenAIServer):
    """The fake server, noting when each request arrived."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.times: list[float] = []

    def _record(self, body, auth):
        super()._record(body, auth)
        with self._lock:
            self.times.append(time.perf_counter())


def run_once(folder: Path, server: TimedServer, n: int, workers: int, batch: int) -> tuple[float, float]:
    suite = folder / "suite.jsonl"
    suite.write_text("".join(json.dumps({"id": f"q{i}", "text": f"bench prompt {i}", "language": "en"}) + "\n" for i in range(n)))
    study_file = folder / f"w{workers}.yaml"
    study_file.write_text(
        f"name: bench\nmodels:\n  - {{name: m, backend: openai, model: fake, params: {{base_url: '{server.base_url}', api_key_env: none}}}}\n"
        f"suites: ['{suite}']\nsamples: 1\nsampling: {{temperature: 0.7, max_tokens: 16, seed: 1}}\n"
    )
    study = load_study(study_file)
    server.reset_counts()
    server.times.clear()
    start = time.perf_counter()
    with Store(folder / f"w{workers}.duckdb") as st:
        stats = run_study(
            study, st, show_progress=False, executor=ExecutorSection(kind="ray", concurrency=workers, batch_size=batch)
        )
    wall = time.perf_counter() - start
    assert stats.generated == n and stats.failed == 0, stats
    steady = (len(server.times) - 1) / (server.times[-1] - server.times[0])
    return steady, n / wall


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--latency", type=float, default=0.1)
    ap.add_argument("--batch", type=int, default=10)
    args = ap.parse_args()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    rates = {}
    with tempfile.TemporaryDirectory() as tmp, TimedServer(latency=args.latency) as server:
        for workers in (1, 2):
            steady, e2e = run_once(Path(tmp), server, args.requests, workers, args.batch)
            ideal = workers / args.latency
            rates[workers] = (steady, e2e)
            print(
                f"{workers} worker(s): steady {steady:6.1f} req/s ({steady / ideal:.2f} of ideal {ideal:.0f}), "
                f"end to end {e2e:6.1f} req/s ({e2e / ideal:.2f} of ideal, start-up included)"
            )
    speedup, speedup_e2e = rates[2][0] / rates[1][0], rates[2][1] / rates[1][1]
    print(f"speed-up 1 -> 2 workers: steady {speedup:.2f}x (target >= 1.8), end to end {speedup_e2e:.2f}x")
    ray.shutdown()
    return 0 if speedup >= 1.8 else 1


if __name__ == "__main__":
    sys.exit(main())
