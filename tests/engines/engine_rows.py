"""An engine test's stored generations of one model, by (prompt key, sample index): what the
real engine wrote, to compare with what transformers wrote for the same plan."""

from __future__ import annotations

from monoculture.store import Store

COLUMNS = ("key", "prompt_key", "sample_index", "text", "finish_reason", "completion_tokens", "error", "logprobs")


def stored_rows(study, model: str, extra: tuple[str, ...] = ()) -> dict[tuple[str, int], dict]:
    with Store(study.store_path(), read_only=True) as st:
        df = st.con.execute(f"SELECT {', '.join(COLUMNS + extra)} FROM generations WHERE model = ?", [model]).df()
    assert df["key"].is_unique
    return {(r.prompt_key, int(r.sample_index)): r._asdict() for r in df.itertuples(index=False)}
