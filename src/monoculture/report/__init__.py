"""The HTML report: one self-contained page (figures, headline, prompt explorer, methods)
built from a stored measurement, and PNG/SVG export of its figures."""

from __future__ import annotations

__all__ = ["build_report", "ReportInfo"]


def __getattr__(name):
    # Lazy, so that `import monoculture.report` (e.g. by the CLI) does not load plotly.
    if name in __all__:
        from monoculture.report import build

        return getattr(build, name)
    raise AttributeError(name)
