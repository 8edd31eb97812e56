"""HTML building blocks of the reports: a self-contained page, tables, and matplotlib figures inlined as PNG."""

from __future__ import annotations

import base64
import html
import io
import math

CSS = """body{font-family:system-ui,sans-serif;max-width:64rem;margin:2rem auto;padding:0 1rem;color:#222}
table{border-collapse:collapse;margin:.5rem 0 1.5rem}td,th{border:1px solid #ccc;padding:.3rem .6rem;text-align:left;vertical-align:top}
th{background:#f4f4f4}.met{color:#0a7d28;font-weight:bold}.unmet{color:#b00020;font-weight:bold}.dim{color:#777}
pre{background:#f7f7f7;padding:1rem;overflow:auto;font-size:.85rem}img{max-width:100%}h3{margin-top:1.5rem}"""


def fmt(value) -> str:
    """A value as table text: floats to 4 significant digits, None as a dash."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.4g}"
    return html.escape(str(value))


def fmt_interval(bounds) -> str:
    return f"[{fmt(bounds[0])}, {fmt(bounds[1])}]" if bounds else "–"


def _cell(value) -> str:
    """A table cell; a (value, css_class) pair gets the class."""
    if isinstance(value, tuple):
        return f"<td class='{value[1]}'>{fmt(value[0])}</td>"
    return f"<td>{fmt(value)}</td>"


def table(headers: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def esc(text: str) -> str:
    return html.escape(str(text))


def pyplot():
    """matplotlib's pyplot on the file-only backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png(fig) -> bytes:
    """The figure as PNG bytes; the figure is closed."""
    plt = pyplot()
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def img(data: bytes, alt: str) -> str:
    return f"<img alt='{esc(alt)}' src='data:image/png;base64,{base64.b64encode(data).decode()}'>"


def document(title: str, parts: list[str]) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title>"
            f"<style>{CSS}</style></head><body>{''.join(parts)}</body></html>")
