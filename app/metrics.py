"""Prometheus metrics. Under gunicorn, PROMETHEUS_MULTIPROC_DIR (set by
gunicorn.conf.py before any worker starts) makes every worker write its values
to files there, and /metrics adds them up, so counts are right across workers."""

import os
import time

from flask import Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

REQUESTS = Counter(
    "fvs_requests_total", "HTTP requests answered", ["endpoint", "method", "status"]
)
ERRORS = Counter("fvs_errors_total", "error responses by error code", ["code"])
REQUEST_SECONDS = Histogram(
    "fvs_request_seconds",
    "time to answer a request",
    ["endpoint"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
STAGE_SECONDS = Histogram(
    "fvs_stage_seconds",
    "time per query in each stage: decode, embed, search",
    ["stage"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
)
EXACT_SEARCHES = Counter(
    "fvs_exact_searches_total",
    "exact searches by how they were answered: 'first_pass' when the 16-bit "
    "first pass proved the answer, 'full_scan' when the float32 scan was needed",
    ["answered_by"],
)
INDEX_RELOADS = Counter(
    "fvs_index_reloads_total", "new indexes noticed behind the link", ["outcome"]
)


def observe_stages(timings_ms: dict) -> None:
    for stage, ms in timings_ms.items():
        if stage != "total":
            STAGE_SECONDS.labels(stage=stage).observe(ms / 1000)


def count_search_passes(queries: int, full_scans: int) -> None:
    EXACT_SEARCHES.labels(answered_by="first_pass").inc(queries - full_scans)
    EXACT_SEARCHES.labels(answered_by="full_scan").inc(full_scans)


def exposition() -> bytes:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest()


def register(app: Flask) -> None:
    @app.before_request
    def start_timer():
        g.started = time.perf_counter()

    @app.after_request
    def count(response):
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        REQUESTS.labels(endpoint, request.method, str(response.status_code)).inc()
        started = g.get("started")
        if started is not None:
            REQUEST_SECONDS.labels(endpoint).observe(time.perf_counter() - started)
        return response

    @app.get("/metrics")
    def metrics_page():
        return Response(exposition(), mimetype=CONTENT_TYPE_LATEST)
