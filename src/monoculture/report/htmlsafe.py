"""Putting untrusted text into a self-contained HTML page: one home for the three pages that do
it (the study report, its Perspectives section shown alone, the ecosystem report).

Model outputs, model names and Hub metadata are written by strangers. They reach a page in
three ways, each with its own hazard:

- as JSON inside ``<script type="application/json">`` (:func:`script_json`): a ``</script>``
  or ``<!--`` in the data must not end the element or change how the HTML parser reads it;
- as plotly labels (:func:`plot_label`): plotly reads a little HTML in labels (``<b>``,
  ``<a href>``), and a leading ``$`` asks it for LaTeX;
- as page text: jinja2's autoescape handles markup, and :func:`bdi` isolates the string's
  direction (below).

Direction is the hazard escaping misses: a right-to-left override (U+202E) in a model name
reverses everything after it in the same paragraph, so ``name: 1.040 [1.014, 1.074]`` reads
``]470.1 ,410.1[ 040.1 :eman``. In the page every untrusted string sits in a ``<bdi>`` (or an
element with ``dir="auto"``), which ends whatever the string opened. SVG labels cannot hold
elements, so :func:`plot_label` drops the explicit directional controls (embeddings,
overrides, isolates: invisible, and no name needs them) and wraps a label that holds
right-to-left text in FSI ... PDI (U+2068, U+2069), so an Arabic or Hebrew name keeps its own
direction without reordering the numbers beside it.

Inline scripts are allowed by their SHA-256 in the page's Content-Security-Policy
(:func:`inline_script`, :func:`content_security_policy`), so the policy needs neither
``'unsafe-inline'`` nor ``'unsafe-eval'`` for scripts: plotly.js draws the SVG traces these
pages use without evaluating strings (its WebGL traces would need ``'unsafe-eval'``; none is
used).
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import unicodedata
from typing import Any

from markupsafe import Markup, escape

# Embeddings, overrides and their terminator (LRE RLE PDF LRO RLO), and the isolates (LRI RLI FSI PDI).
BIDI_CONTROLS = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_CONTROLS_RE = re.compile(f"[{BIDI_CONTROLS}]")
FSI, PDI = "\u2068", "\u2069"
_RTL_CLASSES = frozenset({"R", "AL", "AN"})


def script_json(obj: Any, *, default=None) -> str:
    """JSON that cannot end its ``<script>`` element early: every ``<``, ``>`` and ``&`` (and the
    line separators U+2028, U+2029, which older JavaScript reads as line ends) becomes a
    ``\\u`` escape, which ``JSON.parse`` reads back as the same character. NaN is an error, not
    the invalid JSON ``NaN``."""
    return (
        json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=default)
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def inline_script(js: str) -> tuple[Markup, str]:
    """The text of an inline ``<script>`` and its CSP source (``'sha256-...'``).

    ``</script`` and ``<!--`` (neither occurs in plotly.js or the pages' own scripts) become
    ``<\\/script`` and ``<\\!--``, which mean the same inside JavaScript strings and regular
    expressions. Line ends are normalised as the HTML parser does before the browser hashes the
    text, so the hash matches what the browser sees.
    """
    if "\0" in js:
        raise ValueError("an inline script cannot hold NUL: the HTML parser replaces it and the hash would not match")
    text = js.replace("\r\n", "\n").replace("\r", "\n").replace("</script", "<\\/script").replace("<!--", "<\\!--")
    digest = base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")
    return Markup(text), f"'sha256-{digest}'"


def content_security_policy(script_sources: list[str] | tuple[str, ...]) -> str:
    """The pages' policy: nothing from the network, scripts only those hashed, styles inline
    (plotly.js sets styles on the elements it draws), images from data: and blob: URLs (plotly's
    heatmaps and its SVG download)."""
    scripts = " ".join(script_sources) or "'none'"
    return (
        f"default-src 'none'; script-src {scripts}; style-src 'unsafe-inline'; img-src data: blob:; font-src data:; "
        "connect-src 'none'; base-uri 'none'; form-action 'none'"
    )


def strip_bidi_controls(text: str) -> str:
    """``text`` without explicit directional controls (they are invisible; in a sentence that
    names untrusted strings they could reorder the rest of it)."""
    return _CONTROLS_RE.sub("", text)


def has_rtl(text: str) -> bool:
    return any(unicodedata.bidirectional(ch) in _RTL_CLASSES for ch in text)


def isolate(text: Any) -> str:
    """Plain text for an SVG label: controls dropped, right-to-left text wrapped in FSI ... PDI."""
    s = str(text)
    cleaned = strip_bidi_controls(s)
    return f"{FSI}{cleaned}{PDI}" if (cleaned != s or has_rtl(cleaned)) else cleaned


def plot_label(text: Any) -> str:
    """A data string as plotly label markup that shows the text it is: markup characters as
    entities (plotly decodes them to the literal characters), a leading ``$`` defused with a
    zero-width space (plotly would ask for LaTeX), its direction isolated (:func:`isolate`)."""
    s = html.escape(isolate(text), quote=False)
    return "\u200b" + s if s.startswith("$") else s


def bdi(value: Any) -> Markup:
    """A jinja2 filter: the escaped value in a ``<bdi>``, so its direction cannot leak into the
    text around it. Empty values stay empty."""
    if value is None or value == "":
        return Markup("")
    return Markup("<bdi>%s</bdi>") % escape(str(value))


def install_filters(env) -> None:
    """Register :func:`bdi` and :func:`strip_bidi_controls` (as ``nobidi``) on a jinja2 environment."""
    env.filters["bdi"] = bdi
    env.filters["nobidi"] = lambda v: "" if v is None else strip_bidi_controls(str(v))
