"""Main text and links of an HTML page, shared by the crawler, WARC files and .html files."""

from __future__ import annotations

from urllib.parse import urldefrag, urljoin


def extract(html: str, url: str | None = None) -> tuple[str, str | None]:
    """(main text, title) by trafilatura; empty text when the page has none."""
    import trafilatura

    doc = trafilatura.bare_extraction(html, url=url, favor_recall=True, with_metadata=True)
    if doc is None:
        return "", None
    return (doc.text or "").strip(), doc.title


def links(html: str, base_url: str) -> list[str]:
    """Absolute http(s) links of a page, without fragments, in page order."""
    import lxml.html
    from lxml.etree import ParserError

    try:
        tree = lxml.html.fromstring(html)
    except (ParserError, ValueError):
        return []
    out = []
    for href in tree.xpath("//a/@href"):
        absolute = urldefrag(urljoin(base_url, href.strip())).url
        if absolute.startswith(("http://", "https://")):
            out.append(absolute)
    return list(dict.fromkeys(out))


def decode(body: bytes, content_type: str | None) -> str:
    """Body bytes as text, by the charset the headers name (UTF-8 otherwise), bad bytes replaced."""
    charset = "utf-8"
    for part in (content_type or "").split(";")[1:]:
        key, _, value = part.strip().partition("=")
        if key.lower() == "charset" and value:
            charset = value.strip('"')
    try:
        return body.decode(charset, "replace")
    except LookupError:
        return body.decode("utf-8", "replace")


def is_html(content_type: str | None) -> bool:
    """Whether a Content-Type is an HTML page."""
    return (content_type or "").split(";")[0].strip().lower() in ("text/html", "application/xhtml+xml")
