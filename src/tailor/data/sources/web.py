"""A polite crawler: robots.txt, allow/deny patterns, per-host rate limit, retries with backoff, and an
on-disk cache of every answer, so a second crawl of the same site fetches nothing."""

from __future__ import annotations

import hashlib
import json
import re
import time
import urllib.robotparser
from collections import Counter, deque
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from tailor.artifacts import atomic_write_text
from tailor.data.sources.html import extract, is_html, links
from tailor.errors import TailorError
from tailor.spec.data import WebSource

MAX_REDIRECTS = 5


def _textual(content_type: str | None) -> bool:
    """Bodies worth keeping: HTML pages and plain text such as robots.txt."""
    return is_html(content_type) or (content_type or "").startswith("text/plain")


class Crawler:
    """Fetches pages for one web source; counts every outcome in `stats`."""

    def __init__(self, source: WebSource, where: str, stats: Counter):
        import httpx

        self.source, self.where, self.stats = source, where, stats
        self.cache = Path(source.cache)
        self.client = httpx.Client(timeout=source.timeout, follow_redirects=False,
                                   headers={"User-Agent": source.user_agent})
        self.last: dict[str, float] = {}
        self.robots: dict[str, urllib.robotparser.RobotFileParser] = {}
        self.allow = [re.compile(p) for p in source.allow]
        self.deny = [re.compile(p) for p in source.deny]
        self.hosts = {urlsplit(u).netloc for u in source.seeds}
        self.failures: list[dict] = []

    def fetch(self, url: str) -> dict:
        """{status, url, content_type, body | error}; from the cache when this URL was fetched before."""
        path = self.cache / f"{hashlib.sha256(url.encode()).hexdigest()}.json"
        if path.is_file():
            self.stats["from cache"] += 1
            return json.loads(path.read_text(encoding="utf-8"))
        answer = self._get(url)
        atomic_write_text(path, json.dumps(answer))
        return answer

    def _get(self, url: str) -> dict:
        import httpx

        host = urlsplit(url).netloc
        error = ""
        for attempt in range(self.source.retries + 1):
            wait = self.last.get(host, 0.0) + 1.0 / self.source.rate_limit - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            self.last[host] = time.monotonic()
            self.stats["requests"] += 1
            try:
                r = self.client.get(url)
            except httpx.TimeoutException:
                error = f"timed out after {self.source.timeout:g}s"
            except httpx.TransportError as e:
                error = f"{type(e).__name__}: {e}"
            else:
                if r.status_code < 500:
                    return {"status": r.status_code, "url": url, "content_type": r.headers.get("content-type"),
                            "location": r.headers.get("location"),
                            "body": r.text if r.status_code < 300 and _textual(r.headers.get("content-type")) else None}
                error = f"HTTP {r.status_code}"
            if attempt < self.source.retries:
                time.sleep(self.source.backoff * 2 ** attempt)
        return {"status": None, "url": url, "error": error}

    def allowed(self, url: str) -> bool:
        """Whether the patterns, the host rule and the site's robots.txt let us fetch url."""
        if not url.startswith(("http://", "https://")):
            return False
        if self.source.same_host and urlsplit(url).netloc not in self.hosts:
            return False
        if any(p.search(url) for p in self.deny) or (self.allow and not any(p.search(url) for p in self.allow)):
            return False
        return self._robots(url).can_fetch(self.source.user_agent, url)

    def _robots(self, url: str) -> urllib.robotparser.RobotFileParser:
        parts = urlsplit(url)
        key = f"{parts.scheme}://{parts.netloc}"
        if key not in self.robots:
            parser = urllib.robotparser.RobotFileParser()
            answer = self.fetch(f"{key}/robots.txt")
            # no robots.txt (404 or unreachable) allows everything, as the standard says
            parser.parse((answer.get("body") or "").splitlines() if answer.get("status") == 200 else [])
            self.robots[key] = parser
        return self.robots[key]

    def crawl(self) -> Iterator[tuple[str, dict]]:
        """(url, record) for each HTML page with main text, breadth first from the seeds."""
        queue = deque((url, 0, i) for i, url in enumerate(self.source.seeds))
        seen = set(self.source.seeds)
        pages = 0
        while queue and pages < self.source.max_pages:
            url, depth, seed = queue.popleft()
            if not self.allowed(url):
                self.stats["disallowed (robots.txt or patterns)"] += 1
                continue
            answer, final = self._follow(url)
            if answer is None:
                continue
            status = answer.get("status")
            if status is None:
                if depth == 0:
                    raise TailorError(f"{self.where}.seeds[{seed}]: cannot reach {url}: {answer['error']}")
                self._fail(final, answer["error"])
                continue
            if status >= 400:
                self._fail(final, f"HTTP {status}")
                continue
            if not is_html(answer.get("content_type")):
                self.stats[f"not HTML ({(answer.get('content_type') or 'no type').split(';')[0]})"] += 1
                continue
            pages += 1
            html = answer["body"] or ""
            text, title = extract(html, final)
            if len(text) < max(self.source.min_chars, 1):
                self.stats["no main text"] += 1
            else:
                self.stats["pages"] += 1
                yield final, {"text": text, "url": final, "title": title}
            if depth < self.source.max_depth:
                for link in links(html, final):
                    if link not in seen:
                        seen.add(link)
                        queue.append((link, depth + 1, seed))

    def _follow(self, url: str) -> tuple[dict | None, str]:
        """The answer after redirects (each hop checked like a link), and the URL it came from."""
        for _ in range(MAX_REDIRECTS + 1):
            answer = self.fetch(url)
            if answer.get("status") not in (301, 302, 303, 307, 308):
                return answer, url
            target = urljoin(url, answer.get("location") or "")
            self.stats["redirects"] += 1
            if not self.allowed(target):
                self.stats["disallowed (robots.txt or patterns)"] += 1
                return None, target
            url = target
        self._fail(url, f"more than {MAX_REDIRECTS} redirects")
        return None, url

    def _fail(self, url: str, reason: str) -> None:
        self.stats[f"failed: {reason.split(':')[0]}"] += 1
        if len(self.failures) < 100:
            self.failures.append({"url": url, "reason": reason})


def read_web(source: WebSource, where: str, stats: Counter, failures: list) -> Iterator[tuple[str, dict]]:
    """Records of one crawl; outcomes are counted in stats and failed URLs listed in failures."""
    crawler = Crawler(source, where, stats)
    try:
        yield from crawler.crawl()
    finally:
        failures += crawler.failures
        crawler.client.close()


def read(source: WebSource, context) -> Iterator[tuple[str, dict]]:
    return read_web(source, context.where, context.skipped, context.failures)


def files(source: WebSource, where: str) -> list:
    return []  # a crawl is keyed by its spec only
