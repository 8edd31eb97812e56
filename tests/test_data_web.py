"""The crawler against a real site on 127.0.0.1: robots.txt, redirects, 404s, a slow page, non-HTML
content, a flaky page, rate limiting, and a cache that makes a second crawl fetch nothing."""

import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tailor.data.sources.web import read_web
from tailor.errors import TailorError
from tailor.spec.data import WebSource

TEXT = "The Voltra D18 drill weighs 1.6 kg and ships with two batteries. " * 6


def page(title: str, links: list[str], body: str = TEXT) -> bytes:
    anchors = "".join(f"<a href='{h}'>{h}</a> " for h in links)
    return (f"<html><head><title>{title}</title></head><body><article><h1>{title}</h1><p>{title}: {body}</p>"
            f"<p>{body}</p></article><nav>{anchors}</nav></body></html>").encode()


class Site:
    """A small site; `log` records every request path in order with its time."""

    def __init__(self):
        self.log: list[tuple[str, float]] = []
        self.flaky = Counter()
        site = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def send(self, status: int, body: bytes = b"", ctype: str = "text/html; charset=utf-8", **headers):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):  # the crawler gave up on a slow page
                    pass

            def do_GET(self):
                site.log.append((self.path, time.monotonic()))
                p = self.path
                if p == "/robots.txt":
                    return self.send(200, b"User-agent: *\nDisallow: /private/\n", "text/plain")
                if p == "/":
                    return self.send(200, page("Home", ["/a", "/a#top", "/private/secret", "/old", "/missing", "/slow",
                                                        "/manual.pdf", "/flaky", "http://203.0.113.9/elsewhere"]))
                if p == "/a":
                    return self.send(200, page("Page A", ["/b"]))
                if p == "/b":
                    return self.send(200, page("Page B", ["/c"]))
                if p == "/c":
                    return self.send(200, page("Page C", []))
                if p == "/old":
                    return self.send(301, Location="/new")
                if p == "/new":
                    return self.send(200, page("New home of old", []))
                if p == "/slow":
                    time.sleep(1.0)
                    return self.send(200, page("Slow", []))
                if p == "/manual.pdf":
                    return self.send(200, b"%PDF-1.4 not html", "application/pdf")
                if p == "/flaky":
                    site.flaky[p] += 1
                    return self.send(503) if site.flaky[p] == 1 else self.send(200, page("Flaky", []))
                if p.startswith("/private/"):
                    return self.send(200, page("Secret", []))
                return self.send(404, b"not here")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def paths(self) -> list[str]:
        return [p for p, _ in self.log]


@pytest.fixture
def site():
    s = Site()
    yield s
    s.server.shutdown()
    s.server.server_close()


def crawl(site, tmp_path, **options):
    options = {"rate_limit": 50, "timeout": 0.3, "retries": 1, "backoff": 0.05, **options}
    source = WebSource(type="web", seeds=[site.url + "/"], cache=str(tmp_path / "cache"), **options)
    stats, failures = Counter(), []
    records = dict(read_web(source, "data.sources[0]", stats, failures))
    return records, stats, failures


def test_crawl_obeys_robots_depth_and_reports_every_outcome(site, tmp_path):
    records, stats, failures = crawl(site, tmp_path, max_depth=2)
    got = {url.removeprefix(site.url) for url in records}
    assert got == {"/", "/a", "/b", "/new", "/flaky"}          # /c is depth 3; /slow timed out
    assert all(r["url"] == url and "Voltra D18" in r["text"] for url, r in records.items())
    assert records[site.url + "/a"]["title"] == "Page A"
    assert "/private/secret" not in site.paths()                 # robots.txt disallows it: never requested
    assert site.paths().count("/a") == 1                         # '/a#top' is the same page
    assert stats["disallowed (robots.txt or patterns)"] == 2     # /private/secret and the other host
    assert stats["redirects"] == 1 and stats["failed: HTTP 404"] == 1
    assert stats["failed: timed out after 0.3s"] == 1 and site.paths().count("/slow") == 2  # retried once
    assert stats["not HTML (application/pdf)"] == 1
    assert site.flaky["/flaky"] == 2                              # 503, then a retry that succeeded
    assert {f["url"].removeprefix(site.url) for f in failures} == {"/missing", "/slow"}


def test_second_crawl_fetches_nothing(site, tmp_path):
    first, _, _ = crawl(site, tmp_path)
    requests = len(site.log)
    second, stats, _ = crawl(site, tmp_path)
    assert len(site.log) == requests and stats["requests"] == 0 and stats["from cache"] > 0
    assert second == first


def test_rate_limit_spaces_requests_to_one_host(site, tmp_path):
    crawl(site, tmp_path, rate_limit=10, max_depth=1, deny=["slow"])
    times = [t for _, t in site.log]
    assert len(times) >= 5
    assert min(b - a for a, b in zip(times, times[1:])) >= 0.09


def test_allow_and_deny_patterns_and_max_pages(site, tmp_path):
    records, stats, _ = crawl(site, tmp_path, allow=[r"/$", r"/a$", r"/b$"], max_pages=2)
    assert {u.removeprefix(site.url) for u in records} == {"/", "/a"}
    assert "/old" not in site.paths() and "/b" not in site.paths()


def test_unreachable_seed_is_a_clear_error(tmp_path):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    source = WebSource(type="web", seeds=[f"http://127.0.0.1:{port}/"], cache=str(tmp_path / "c"), retries=0, timeout=1)
    with pytest.raises(TailorError, match=rf"data\.sources\[0\]\.seeds\[0\]: cannot reach http://127\.0\.0\.1:{port}/"):
        list(read_web(source, "data.sources[0]", Counter(), []))
