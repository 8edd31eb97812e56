"""Prometheus metrics of the server, and alert rules evaluated continuously against them.

Each firing or resolved alert is logged and POSTed as JSON to the spec's webhook. The rules read
a sliding window of recent requests (latency, errors), the drift monitor and the feedback store.
"""

from __future__ import annotations

import collections
import logging
import threading
import time

import httpx
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from tailor.spec.deploy import Alert, Monitor

log = logging.getLogger("tailor.monitor")
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    """The server's Prometheus series, in a registry of its own (one per app)."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter("tailor_requests", "Requests by route and status code", ["route", "code"], registry=r)
        self.errors = Counter("tailor_request_errors", "Requests answered 4xx/5xx, by route and code",
                              ["route", "code"], registry=r)
        self.latency = Histogram("tailor_request_latency_seconds", "Request latency", ["route"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.ttft = Histogram("tailor_time_to_first_token_seconds", "Time from arrival to the first token",
                              buckets=LATENCY_BUCKETS, registry=r)
        self.tokens = Counter("tailor_generated_tokens", "Tokens generated", registry=r)
        self.predictions = Counter("tailor_predicted_labels", "Labels given by /v1/classify (per word for token labels)",
                                   ["label"], registry=r)
        self.tokens_per_second = Gauge("tailor_tokens_per_second", "Tokens generated per second over the last 10 s",
                                       registry=r)
        self.queue_depth = Gauge("tailor_queue_depth", "Requests waiting for a batch slot", registry=r)
        self.running = Gauge("tailor_running_requests", "Requests being decoded", registry=r)
        self.model = Gauge("tailor_model_info", "The model version being served (value 1)", ["version"], registry=r)
        self.drift = Gauge("tailor_drift_psi", "Input drift against the training data (PSI)", ["feature"], registry=r)
        self.unknown_rate = Gauge("tailor_unknown_token_rate", "Share of prompt tokens never seen in training",
                                  registry=r)
        self.accuracy = Gauge("tailor_online_accuracy", "Share of answers marked correct in feedback", registry=r)
        self.alerts = Gauge("tailor_alert_firing", "1 while an alert rule fires", ["rule"], registry=r)
        self._token_times: collections.deque[float] = collections.deque()
        self._lock = threading.Lock()

    def set_model(self, version: str) -> None:
        self.model.clear()
        self.model.labels(version=version).set(1)

    def add_tokens(self, n: int) -> None:
        now = time.monotonic()
        self.tokens.inc(n)
        with self._lock:
            self._token_times.extend([now] * n)
            while self._token_times and self._token_times[0] < now - 10:
                self._token_times.popleft()
            self.tokens_per_second.set(len(self._token_times) / 10)


class RequestWindow:
    """(time, latency seconds, failed) of recent requests, for the rules."""

    def __init__(self, horizon: float = 3600):
        self.horizon = horizon
        self._items: collections.deque[tuple[float, float, bool]] = collections.deque()
        self._lock = threading.Lock()

    def add(self, latency: float, failed: bool) -> None:
        now = time.time()
        with self._lock:
            self._items.append((now, latency, failed))
            while self._items and self._items[0][0] < now - self.horizon:
                self._items.popleft()

    def since(self, t: float) -> list[tuple[float, float, bool]]:
        with self._lock:
            return [x for x in self._items if x[0] >= t]


def rule_name(rule: Alert) -> str:
    return f"{rule.metric} {'>' if rule.above is not None else '<'} {rule.above if rule.above is not None else rule.below:g}"


class Alerter:
    """Evaluates the spec's rules every `monitor.every` seconds in a thread; state changes are sent out."""

    def __init__(self, config: Monitor, metrics: Metrics, window: RequestWindow, drift=None, feedback=None,
                 queue_depth=lambda: 0):
        self.config, self.metrics, self.window = config, metrics, window
        self.drift, self.feedback, self.queue_depth = drift, feedback, queue_depth
        self.firing: dict[str, bool] = {}
        self.sent: list[dict] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def value(self, rule: Alert) -> float | None:
        """The rule's metric now, or None when there is too little to judge."""
        since = time.time() - rule.window
        if rule.metric in ("p95_latency_ms", "error_rate"):
            recent = self.window.since(since)
            if len(recent) < rule.min_count:
                return None
            if rule.metric == "error_rate":
                return sum(r[2] for r in recent) / len(recent)
            latencies = sorted(r[1] for r in recent)
            return 1000 * latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))]
        if rule.metric == "drift_psi":
            scores = self.drift.scores() if self.drift else None
            return self.drift.combined(scores) if scores else None
        if rule.metric == "online_accuracy":
            if self.feedback is None:
                return None
            accuracy, n = self.feedback.accuracy(since)
            return accuracy if n >= rule.min_count else None
        return float(self.queue_depth())

    def evaluate(self) -> list[dict]:
        """Check every rule once; the events (firing/resolved) this produced."""
        events = []
        self._refresh_gauges()
        for rule in self.config.alerts:
            name, value = rule_name(rule), self.value(rule)
            if value is None:
                continue
            firing = value > rule.above if rule.above is not None else value < rule.below  # type: ignore[operator]
            self.metrics.alerts.labels(rule=name).set(int(firing))
            if firing != self.firing.get(name, False):
                self.firing[name] = firing
                events.append({"rule": name, "metric": rule.metric, "status": "firing" if firing else "resolved",
                               "value": round(value, 6), "threshold": rule.above if rule.above is not None else rule.below,
                               "time": time.time()})
        for event in events:
            self.send(event)
        return events

    def _refresh_gauges(self) -> None:
        if self.drift is not None and (scores := self.drift.scores()):
            self.metrics.drift.labels(feature="length").set(scores["length"])
            self.metrics.drift.labels(feature="ngram").set(scores["ngram"])
            self.metrics.unknown_rate.set(scores["unknown_token_rate"])
        if self.feedback is not None:
            accuracy, n = self.feedback.accuracy(time.time() - 3600)
            if accuracy is not None:
                self.metrics.accuracy.set(accuracy)

    def send(self, event: dict) -> None:
        level = logging.WARNING if event["status"] == "firing" else logging.INFO
        log.log(level, "alert %s: %s (value %s, threshold %s)", event["status"], event["rule"], event["value"],
                event["threshold"])
        self.sent.append(event)
        if self.config.webhook:
            try:
                httpx.post(self.config.webhook, json=event, timeout=5).raise_for_status()
            except httpx.HTTPError as e:  # the alert is in the log either way
                log.error("alert webhook %s failed: %s", self.config.webhook, e)

    def start(self) -> None:
        if self.config.alerts or self.drift is not None or self.feedback is not None:
            self._thread = threading.Thread(target=self._run, name="alerts", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.config.every):
            try:
                self.evaluate()
            except Exception:  # a failing rule must not stop the others on the next round
                log.exception("alert evaluation failed")

    def stop(self) -> None:
        self._stop.set()
