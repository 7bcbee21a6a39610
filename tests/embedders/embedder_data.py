"""Data of the embedder tests: a small store of four models' answers (English, with a few answers
in scripts wordllama has no words for), and the network guard. A module of its own, not conftest:
``from conftest import`` finds whichever conftest was imported first."""

from __future__ import annotations

import contextlib
import socket

import pytest

from monoculture.importers import Imported, import_records
from monoculture.store import Store

TOPICS = ["the sea", "a mountain", "bread", "winter", "a library", "trains", "music", "gardens", "the moon", "rivers"]
STYLES = {
    "poet-a": "O {t}, you shine and sing; verse {i} of my little song about {t}.",
    "poet-b": "O {t}, you glow and ring; line {i} of a short song about {t}.",
    "lister": "1. {t} facts\n2. more about {t}\n3. item {i}",
    "pundit": "In my view, {t} matters because people need it (take {i}).",
}
AMHARIC = "ሰላም እንዴት ነህ ደህና ነኝ አመሰግናለሁ"
THAI = "สวัสดีครับ ยินดีต้อนรับ วันนี้อากาศดีมาก"


def fill(st: Store, extra: dict[str, str] | None = None) -> None:
    """Two answers per (model, topic); ``extra`` adds one more prompt answered by every model."""
    recs = []
    for m, style in STYLES.items():
        for p, t in enumerate(TOPICS):
            recs += [Imported(m, f"p{p}", f"Tell me about {t}.", style.format(t=t, i=i), sample_index=i) for i in range(2)]
        for pid, text in (extra or {}).items():
            recs.append(Imported(m, pid, "Say hello.", f"{text} ({m})", sample_index=0))
    import_records(st, recs, "jsonl")
    families = {"poet-a": "poets", "poet-b": "poets", "lister": "listers", "pundit": "pundits"}
    st.upsert_models(
        [
            {"name": n, "backend": "import", "model_id": n, "source": "jsonl", "attributes": {"family": f}}
            for n, f in families.items()
        ]
    )


@contextlib.contextmanager
def no_network():
    """Every way out of the process to a socket address raises and is recorded (as in
    tests/test_demo.py): a library that catches the error and carries on still fails the test."""
    attempts: list[str] = []

    def refuse(*args, **kwargs):
        attempts.append(repr(args[1:] if args and isinstance(args[0], socket.socket) else args)[:200])
        raise OSError("network access is blocked in this test")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", refuse)
        mp.setattr(socket.socket, "connect_ex", refuse)
        mp.setattr(socket, "create_connection", refuse)
        mp.setattr(socket, "getaddrinfo", refuse)
        yield attempts
