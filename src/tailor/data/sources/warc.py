"""WARC files (Common Crawl style): the main text of each HTML response, with its URL."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from tailor.data.sources.files import expand
from tailor.data.sources.html import decode, extract, is_html
from tailor.data.sources.records import Reject
from tailor.errors import TailorError
from tailor.spec.data import WarcSource


def read_warc(source: WarcSource, where: str, skipped: Counter) -> Iterator[tuple[str, dict | Reject]]:
    """(file#record, record) per HTML response; other records are counted in `skipped` by kind."""
    from warcio.archiveiterator import ArchiveIterator
    from warcio.exceptions import ArchiveLoadFailed

    n = 0
    for path in expand(source.paths, f"{where}.path"):
        with open(path, "rb") as f:
            try:
                for i, rec in enumerate(ArchiveIterator(f), 1):
                    if rec.format != "warc":  # warcio reads anything as an ARC record; ARC is not supported
                        raise ArchiveLoadFailed(f"record {i} is not a WARC record")
                    if rec.rec_type != "response":
                        skipped[f"warc {rec.rec_type} record"] += 1
                        continue
                    url = rec.rec_headers.get_header("WARC-Target-URI")
                    ctype = rec.http_headers.get_header("Content-Type") if rec.http_headers else None
                    if not is_html(ctype):
                        skipped[f"not HTML ({(ctype or 'no type').split(';')[0]})"] += 1
                        continue
                    text, title = extract(decode(rec.content_stream().read(), ctype), url)
                    if not text:
                        skipped["no main text"] += 1
                        continue
                    n += 1
                    yield f"{path}#{i}", {"text": text, "url": url, "title": title}
                    if source.max_records is not None and n >= source.max_records:
                        return
            except ArchiveLoadFailed as e:
                raise TailorError(f"{path}: not a readable WARC file ({e})") from None


def read(source: WarcSource, context) -> Iterator[tuple[str, dict | Reject]]:
    return read_warc(source, context.where, context.skipped)


def files(source: WarcSource, where: str) -> list:
    return expand(source.paths, f"{where}.path")
