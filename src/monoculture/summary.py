"""The short summary `measure` prints: the headline figures with their intervals."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from monoculture.terminal import styled


def _fmt(v, digits: int = 3) -> str:
    if v is None:
        return "–"
    try:
        return f"{float(v):.{digits}f}"
    except (TypeError, ValueError):
        return str(v)


def _ci(d: dict | None) -> str:
    if not d:
        return "–"
    ci = d.get("ci") or [None, None]
    return f"{_fmt(d.get('value'))} [{_fmt(ci[0])}, {_fmt(ci[1])}]"


def describe_skipped(skipped: dict) -> list[str]:
    """Only what was actually skipped: counts above zero, and lists by their length."""
    out = []
    for k, v in skipped.items():
        if isinstance(v, (list, tuple, set)):
            if v:
                out.append(f"{k.replace('_', ' ')}: {len(v)}")
        elif isinstance(v, (int, float)) and v:
            out.append(f"{k.replace('_', ' ')}: {v:g}")
    return out


def print_summary(res, console: Console) -> None:
    s = res.summary
    st = s.get("settings", {})
    console.print(
        styled(  # styled: the values are printed as typed, never as markup (monoculture.terminal)
            "[bold]{} models[/bold], {} prompts, {} responses; embedder {} ({}); {} bootstrap resamples; label {}",
            len(s.get("models", [])),
            st.get("prompts", "?"),
            st.get("responses", "?"),
            s.get("embedder"),
            "calibrated" if s.get("calibrated") else "raw cosines",
            st.get("n_boot"),
            repr(res.label),
        )
    )
    voices = s.get("voices") or {}
    console.print(styled("voices per prompt V: [bold]{}[/bold] over {} prompts", _ci(voices), voices.get("prompts", "?")))
    hom = s.get("homogeneity")
    floor = s.get("off_prompt_floor")
    floor_v = floor.get("value") if isinstance(floor, dict) else floor
    if hom is not None:
        console.print(
            styled(
                "homogeneity H: [bold]{}[/bold]  (off-prompt floor F = {})",
                _ci(hom) if isinstance(hom, dict) else _fmt(hom),
                _fmt(floor_v),
            )
        )
    skipped = describe_skipped(s.get("skipped") or {})
    if skipped:
        console.print("skipped: " + "; ".join(skipped), style="yellow")
    for note in s.get("notes") or []:
        console.print(f"note: {note}", style="dim")

    loo = s.get("leave_one_out") or {}
    if loo:
        t = Table(
            "model", "L_m (what the field loses without it)", "W_m (within)", "prompts", title="leave-one-out, largest loss first"
        )
        within = s.get("within_model_similarity") or {}
        for name, d in sorted(loo.items(), key=lambda kv: -(kv[1].get("value") or float("-inf"))):
            t.add_row(name, _ci(d), _fmt(within.get(name)), str(d.get("prompts", "")))
        console.print(t)
    groups = s.get("groups") or {}
    if groups:
        t = Table("group", "members", "L_G", "random group of that size", title="what the field loses without a group")
        for name, d in sorted(groups.items(), key=lambda kv: -(kv[1].get("value") or float("-inf"))):
            members = d.get("members") or []
            t.add_row(name, str(len(members)), _ci(d), _fmt(d.get("baseline")))
        console.print(t)
