"""The one home for untrusted text in the pages: JSON in script elements, inline scripts and
their hashes, plotly labels and direction isolation."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from monoculture.report.htmlsafe import (
    BIDI_CONTROLS,
    FSI,
    PDI,
    bdi,
    content_security_policy,
    inline_script,
    plot_label,
    script_json,
)

HOSTILE = [
    "</script><script>alert(1)</script>",
    "</SCRIPT >",
    "<!-- <script> comment games -->",
    "a & b &amp; c &#x3c;",
    "line\u2028separator\u2029paragraph",
    "evil\u202e 1.040 [1.014, 1.074]",
    "\u0000 nul and \ud7ff and emoji \U0001f600",
]


@pytest.mark.parametrize("s", HOSTILE)
def test_script_json_cannot_leave_its_element(s):
    out = script_json({"t": s, "list": [s]})
    for bad in ("<", ">", "&", "\u2028", "\u2029"):
        assert bad not in out, bad
    assert json.loads(out) == {"t": s, "list": [s]}


def test_script_json_refuses_nan_and_takes_a_default():
    with pytest.raises(ValueError):
        script_json({"x": float("nan")})
    import datetime as dt

    assert json.loads(script_json({"d": dt.date(2024, 1, 2)}, default=str)) == {"d": "2024-01-02"}


def test_every_page_uses_the_one_helper():
    """The ecosystem figures and the perspectives page no longer keep copies of their own."""
    from monoculture.ecosystem import figures as eco
    from monoculture.probes import report_section as probes
    from monoculture.report import build, figures

    fig = {"data": [{"type": "bar", "x": ["</script>", "\u2028"], "y": [1, 2]}]}
    assert eco.to_json(fig) == script_json(fig, default=str)
    assert not hasattr(probes, "_script_json") and probes.script_json is script_json
    assert build.script_json is script_json
    assert figures.label("<b>x</b>") == eco.label("<b>x</b>") == probes._label("<b>x</b>") == plot_label("<b>x</b>")


def test_inline_script_and_its_hash():
    text, src = inline_script("var s = '</script>' + '<!--';\r\nvar t = 1;")
    assert "</script" not in text and "<!--" not in text and "\r" not in text
    assert src == "'sha256-" + base64.b64encode(hashlib.sha256(str(text).encode()).digest()).decode() + "'"
    with pytest.raises(ValueError):
        inline_script("a\0b")
    policy = content_security_policy([src])
    assert f"script-src {src};" in policy and "unsafe" not in policy.split("style-src")[0]
    assert "default-src 'none'" in policy and "connect-src 'none'" in policy


def test_plot_label_escapes_and_isolates():
    assert plot_label("<b>x</b> & y") == "&lt;b&gt;x&lt;/b&gt; &amp; y"
    assert plot_label("$x$") == "\u200b$x$"
    assert plot_label("gpt-4o") == "gpt-4o"  # nothing to isolate: exports keep plain names
    # An override is dropped and the label isolated, so what follows it keeps its order.
    assert plot_label("evil\u202e") == f"{FSI}evil{PDI}"
    # Right-to-left text keeps its own direction inside an isolate.
    assert plot_label("نموذج") == f"{FSI}نموذج{PDI}"
    # A stray PDI cannot close the isolate early: every explicit control is dropped first.
    lab = plot_label("x\u2069\u202eabc")
    assert lab == f"{FSI}xabc{PDI}" and not any(c in lab[1:-1] for c in BIDI_CONTROLS)


def test_bdi_filter():
    assert str(bdi("evil\u202e<i>")) == "<bdi>evil\u202e&lt;i&gt;</bdi>"
    assert str(bdi(None)) == "" and str(bdi("")) == ""
