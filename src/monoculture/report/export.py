"""Figures as PNG and SVG files, for papers.

Export renders with the same plotly.js as the page, in a headless Chromium: through kaleido
when it can start a browser, else through playwright and the system Chromium (Plotly.toImage
in a page of our own). Both run offline: kaleido is told not to load MathJax from its CDN, and
the playwright page is built from the inline plotly.js. Every PNG written is decoded and checked
for being more than a blank canvas, because a renderer that fails quietly leaves exactly that.
"""

from __future__ import annotations

import base64
import os
import shutil
import struct
import urllib.parse
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from monoculture.errors import UserError

SCALE = 2  # print resolution: a 900 px wide figure becomes 1800 px


def chromium_path() -> str | None:
    """The Chromium to render with: $MONOCULTURE_CHROMIUM, $BROWSER_PATH, else one on PATH."""
    for env in ("MONOCULTURE_CHROMIUM", "BROWSER_PATH"):
        p = os.environ.get(env)
        if p and (Path(p).exists() or shutil.which(p)):
            return p
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome"):
        p = shutil.which(name)
        if p:
            return p
    return None


def export_figures(figures: list, folder: Path, formats: tuple[str, ...] = ("png", "svg"), scale: float = SCALE) -> list[Path]:
    """Write each figure as ``<name>.<format>`` in ``folder``; returns the paths written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    jobs = [(f, fmt, folder / f"{f.name}.{fmt}") for f in figures for fmt in formats]
    errors = []
    for render in (_kaleido, _playwright):
        try:
            render(jobs, scale)
            break
        except Exception as e:  # noqa: BLE001 - try the next renderer, report all if none works
            errors.append(f"{render.__name__.strip('_')}: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
    else:
        raise UserError("cannot export figures: " + "; ".join(errors) + " (install kaleido or playwright, and Chromium)")
    for _, fmt, path in jobs:
        if fmt == "png":
            check_png(path.read_bytes(), where=str(path))
    return [p for _, _, p in jobs]


def static_dict(f) -> dict:
    """The figure as a file shows it: buttons that only work on the page are dropped."""
    d = f.to_dict()
    layout = dict(d.get("layout") or {})
    layout.pop("updatemenus", None)
    return {**d, "layout": layout}


def _kaleido(jobs, scale: float) -> None:
    import kaleido

    specs = [
        {
            "fig": static_dict(f),
            "path": path,
            "opts": {"format": fmt, "width": f.width, "height": f.height, "scale": scale if fmt == "png" else 1},
        }
        for f, fmt, path in jobs
    ]
    kopts: dict[str, Any] = {"mathjax": False}
    browser = chromium_path()
    if browser:
        kopts["path"] = browser
    kaleido.write_fig_from_object_sync(specs, kopts=kopts)
    missing = [str(p) for _, _, p in jobs if not p.exists() or p.stat().st_size == 0]
    if missing:
        raise RuntimeError(f"kaleido wrote nothing to {missing[0]}")


_PAGE = """<!DOCTYPE html><html><head><meta charset="utf-8"><script>{js}</script></head>
<body style="margin:0"><div id="fig"></div></body></html>"""


def _playwright(jobs, scale: float) -> None:
    from playwright.sync_api import sync_playwright
    from plotly.offline import get_plotlyjs

    browser_path = chromium_path()
    with sync_playwright() as pw:
        kw: dict[str, Any] = {"headless": True, "args": ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]}
        if browser_path:
            kw["executable_path"] = browser_path
        browser = pw.chromium.launch(**kw)
        try:
            page = browser.new_page()
            page.route("**/*", lambda r: r.abort() if not r.request.url.startswith(("data:", "about:")) else r.continue_())
            page.set_content(_PAGE.format(js=get_plotlyjs().replace("</script", "<\\/script")))
            for f, fmt, path in jobs:
                url = page.evaluate(
                    """async ([spec, fmt, w, h, s]) => {
                        const el = document.getElementById('fig');
                        await Plotly.newPlot(el, spec.data || [], Object.assign({}, spec.layout || {}, {width: w, height: h}), {staticPlot: true});
                        const out = await Plotly.toImage(el, {format: fmt, width: w, height: h, scale: s});
                        Plotly.purge(el);
                        return out;
                    }""",
                    [static_dict(f), fmt, f.width, f.height, scale if fmt == "png" else 1],
                )
                path.write_bytes(_data_url_bytes(url))
        finally:
            browser.close()


def _data_url_bytes(url: str) -> bytes:
    head, _, data = url.partition(",")
    if head.endswith(";base64"):
        return base64.b64decode(data)
    return urllib.parse.unquote(data).encode("utf-8")


# -- checking a PNG without an imaging library ------------------------------------------------


def png_pixels(data: bytes) -> np.ndarray:
    """Decode an 8-bit, non-interlaced PNG (what Chromium writes) to an (h, w, channels) array."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG file")
    pos, idat, ihdr = 8, [], None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        pos += 12 + length
    if ihdr is None:
        raise ValueError("PNG without IHDR")
    w, h, depth, ctype, _, _, interlace = ihdr
    channels = {0: 1, 2: 3, 4: 2, 6: 4}.get(ctype)
    if depth != 8 or channels is None or interlace:
        raise ValueError(f"unsupported PNG (bit depth {depth}, colour type {ctype}, interlace {interlace})")
    raw = zlib.decompress(b"".join(idat))
    stride = w * channels
    rows = np.frombuffer(raw, dtype=np.uint8, count=h * (stride + 1)).reshape(h, stride + 1)
    filters = rows[:, 0]
    slow = int(np.isin(filters, (3, 4)).sum())
    if slow > 64:
        raise ValueError(f"{slow} rows use the Average/Paeth filters, too slow to decode in Python")
    out = np.zeros((h, stride), dtype=np.uint8)
    prev = np.zeros(stride, dtype=np.int32)
    for y in range(h):
        f = int(filters[y])
        line = rows[y, 1:].astype(np.int32)
        if f == 0:
            cur = line
        elif f == 1:  # Sub: a running sum along each channel
            cur = np.cumsum(line.reshape(w, channels), axis=0).reshape(-1) & 0xFF
        elif f == 2:
            cur = (line + prev) & 0xFF
        elif f in (3, 4):
            cur = np.zeros(stride, dtype=np.int32)
            zero = np.zeros(channels, dtype=np.int32)
            for x in range(0, stride, channels):
                a = cur[x - channels : x] if x else zero
                b = prev[x : x + channels]
                if f == 3:
                    pred = (a + b) >> 1
                else:
                    c = prev[x - channels : x] if x else zero
                    p = a + b - c
                    pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
                    pred = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
                cur[x : x + channels] = (line[x : x + channels] + pred) & 0xFF
        else:
            raise ValueError(f"bad PNG filter {f}")
        out[y] = cur
        prev = cur
    return out.reshape(h, w, channels)


def check_png(data: bytes, *, where: str = "PNG", min_side: int = 100) -> tuple[int, int]:
    """(width, height) of a PNG that is a real picture: big enough and not one flat colour."""
    try:
        (w, h) = struct.unpack(">II", data[16:24])
    except struct.error:
        raise UserError("exported PNG is truncated", where=where) from None
    if w < min_side or h < min_side:
        raise UserError(f"exported PNG is only {w} x {h} pixels", where=where)
    try:
        px = png_pixels(data)
    except ValueError:
        return w, h  # a PNG flavour the checker does not read; its size was checked
    rgb = px[..., :3].astype(float) if px.shape[2] >= 3 else px[..., :1].astype(float)
    if float(rgb.std()) < 2.0:
        raise UserError("exported PNG is blank (a single flat colour)", where=where)
    return w, h
