"""Figures exported for papers: real images of the figure, not blank canvases."""

from __future__ import annotations

import struct
import xml.etree.ElementTree as ET
import zlib

import numpy as np
import pytest

from browser import require_browser
from monoculture.report import build_report
from monoculture.report import export as E
from monoculture.report.build import make_figures
from monoculture.report.export import check_png, export_figures, png_pixels


def _viridis(n: int = 128) -> np.ndarray:
    from plotly.colors import sample_colorscale

    cols = sample_colorscale("Viridis", list(np.linspace(0, 1, n)))
    return np.array([[int(float(v)) for v in c[c.index("(") + 1 : -1].split(",")] for c in cols], dtype=float)


def assert_heatmap_png(data: bytes, width: int, height: int) -> None:
    w, h = check_png(data)
    assert (w, h) == (width, height)
    px = png_pixels(data)[..., :3].astype(float)
    assert px.std() > 20, "image is nearly flat"
    pal = _viridis()
    flat = px.reshape(-1, 3)[::7]
    d = np.sqrt(((flat[:, None, :] - pal[None, :, :]) ** 2).sum(-1)).min(axis=1)
    share = float((d < 12).mean())
    assert share > 0.15, f"only {share:.1%} of the pixels are heatmap colours"
    # Both ends of the scale are drawn (the matrix spans the colour range).
    near = lambda rgb: float((np.sqrt(((flat - np.array(rgb, float)) ** 2).sum(-1)) < 40).mean())  # noqa: E731
    assert near((68, 1, 84)) > 0.001 and near((253, 231, 37)) > 0.001


def _figures(store_path):
    from monoculture.measure import load_results
    from monoculture.store import Store

    with Store(store_path, read_only=True) as st:
        m = load_results(st)
        return make_figures(m, st.model_attributes(), st.generations())[0]


def test_exported_heatmap_png_is_the_heatmap(measured_store, tmp_path):
    require_browser()
    info = build_report(measured_store, tmp_path / "r.html", export_figures=tmp_path / "figs")
    names = {p.name for p in info.exported}
    for f in info.figures:
        assert {f"{f}.png", f"{f}.svg"} <= names
    heat = next(f for f in _figures(measured_store) if f.name == "similarity")
    assert_heatmap_png((tmp_path / "figs" / "similarity.png").read_bytes(), heat.width * E.SCALE, heat.height * E.SCALE)
    svg = ET.parse(tmp_path / "figs" / "similarity.svg").getroot()
    assert svg.tag.endswith("svg")
    text = (tmp_path / "figs" / "similarity.svg").read_text(encoding="utf-8")
    assert "alpha-small" in text and "<image" in text  # labels, and the heatmap raster


def test_export_falls_back_to_playwright(measured_store, tmp_path, monkeypatch):
    require_browser()

    def broken(jobs, scale):
        raise RuntimeError("no kaleido here")

    monkeypatch.setattr(E, "_kaleido", broken)
    heat = next(f for f in _figures(measured_store) if f.name == "similarity")
    paths = export_figures([heat], tmp_path)
    assert sorted(p.name for p in paths) == ["similarity.png", "similarity.svg"]
    assert_heatmap_png((tmp_path / "similarity.png").read_bytes(), heat.width * E.SCALE, heat.height * E.SCALE)
    assert ET.parse(tmp_path / "similarity.svg").getroot().tag.endswith("svg")


def test_export_reports_when_no_renderer_works(measured_store, tmp_path, monkeypatch):
    from monoculture.errors import UserError

    def broken(jobs, scale):
        raise RuntimeError("nope")

    monkeypatch.setattr(E, "_kaleido", broken)
    monkeypatch.setattr(E, "_playwright", broken)
    heat = next(f for f in _figures(measured_store) if f.name == "similarity")
    with pytest.raises(UserError, match="cannot export figures"):
        export_figures([heat], tmp_path)


def _png(rgb: np.ndarray, filters) -> bytes:
    """Encode with the given filter per row, to check the decoder against every filter type."""
    h, w, c = rgb.shape
    raw, prev = b"", np.zeros(w * c, dtype=np.int32)
    for y in range(h):
        row = rgb[y].reshape(-1).astype(np.int32)
        f = filters[y % len(filters)]
        out = np.zeros_like(row)
        for x in range(len(row)):
            a = row[x - c] if x >= c else 0
            b = prev[x]
            cc = prev[x - c] if x >= c else 0
            if f == 0:
                pred = 0
            elif f == 1:
                pred = a
            elif f == 2:
                pred = b
            elif f == 3:
                pred = (a + b) >> 1
            else:
                p = a + b - cc
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - cc)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else cc)
            out[x] = (row[x] - pred) & 0xFF
        raw += bytes([f]) + bytes(out.astype(np.uint8))
        prev = row

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2 if c == 3 else 6, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def test_png_decoder_reads_every_filter():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(10, 7, 3), dtype=np.uint8)
    assert np.array_equal(png_pixels(_png(img, [0, 1, 2, 3, 4])), img)
    rgba = rng.integers(0, 256, size=(6, 5, 4), dtype=np.uint8)
    assert np.array_equal(png_pixels(_png(rgba, [4, 3, 1])), rgba)


def test_blank_png_is_rejected():
    from monoculture.errors import UserError

    flat = np.full((150, 150, 3), 255, dtype=np.uint8)
    with pytest.raises(UserError, match="blank"):
        check_png(_png(flat, [0]))
    with pytest.raises(UserError, match="pixels"):
        check_png(_png(np.zeros((20, 20, 3), dtype=np.uint8), [0]))
