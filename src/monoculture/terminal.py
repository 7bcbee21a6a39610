"""Terminal output: one console policy for every command, so no caller can forget to escape.

What the commands print is full of text other people chose: model names, file names, prompts,
Hub ids, error messages that quote a bad cell. Printed through rich with markup on, a ``[/x]``
in a file name raises MarkupError and ``outputs[v2].jsonl`` loses its ``[v2]``; printed raw, an
ANSI escape in a model name (``\\x1b[2J``) clears or rewrites the user's terminal and a bidi
override (U+202E) reverses the figures beside it. Escaping at each call site is easy to forget,
so the policy lives in the console itself:

* :class:`SafeConsole` has markup off by default (brackets print as typed), and every string it
  renders, and every segment any renderable produces (tables, progress bars, ``Text``), has its
  control characters and bidi controls replaced by visible escapes (:func:`clean`).
* Deliberate styling goes through ``style=`` or :func:`styled`, a markup template written in the
  code whose values are escaped.

Every command's consoles are made here (:func:`stdout_console`, :func:`stderr_console`), and
progress bars take their columns from :func:`description_column`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from rich.console import Console, ConsoleOptions, RenderableType
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, Task, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.segment import Segment
from rich.text import Text

#: C0 controls except tab and newline, DEL, C1 controls, and the Unicode controls that reorder
#: or break lines (bidi embeddings, overrides, isolates and marks; line/paragraph separators).
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")


def _visible(m: re.Match) -> str:
    c = m.group(0)
    return f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}"


def clean(text: object) -> str:
    """``text`` with each terminal control character shown as its escape (``\\x1b``,
    ``\\u202e``): visible, so a user can see what a name holds, and inert."""
    s = str(text)
    return _UNSAFE.sub(_visible, s) if _UNSAFE.search(s) else s


def styled(template: str, *values: object) -> Text:
    """Rich markup written in the code, with ``{}`` slots for untrusted values: each value is
    cleaned and markup-escaped, so ``styled("[bold]{}[/bold]: done", name)`` is safe for any name."""
    return Text.from_markup(template.format(*(escape(clean(v)) for v in values)))


class SafeConsole(Console):
    """A rich console that cannot be made to interpret user text: markup is off unless a caller
    asks for it, and control characters are escaped in everything rendered."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("markup", False)
        super().__init__(*args, **kwargs)

    def render_str(self, text: str, *args, **kwargs) -> Text:  # strings: cleaned before layout
        return super().render_str(clean(text), *args, **kwargs)

    def render(self, renderable: RenderableType, options: ConsoleOptions | None = None) -> Iterable[Segment]:
        # everything else (Text, tables, progress bars): each content segment is cleaned
        for seg in super().render(renderable, options):
            if seg.control is None and _UNSAFE.search(seg.text):
                yield Segment(clean(seg.text), seg.style, seg.control)
            else:
                yield seg


def stdout_console(**kwargs) -> SafeConsole:
    return SafeConsole(**kwargs)


def stderr_console(**kwargs) -> SafeConsole:
    return SafeConsole(stderr=True, **kwargs)


class _DescriptionColumn(TextColumn):
    def render(self, task: Task) -> Text:
        return Text(clean(task.description), style=self.style)


def description_column(style: str = "") -> TextColumn:
    """A progress bar's description column that prints the description as typed (a model or
    file name), never as markup: rich's default column parses it, so ``[/x]`` would crash."""
    return _DescriptionColumn("{task.description}", style=style, markup=False)


def work_progress(console: Console | None, show: bool = True, style: str = "") -> Progress:
    """The progress bar of long work (collecting, loops, image rounds): description as typed,
    bar, done of total, elapsed and remaining; kept on screen when done; off when ``show`` is
    False (quiet runs, tests)."""
    return Progress(
        description_column(style),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not show,
        transient=False,
    )
