"""The plan's HTTP metrics. Under Gunicorn every worker is a process, so the
registry is prometheus_client's multiprocess one (PROMETHEUS_MULTIPROC_DIR)."""

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import multiprocess

REQUESTS = Counter("http_requests_total", "HTTP requests handled", ["method", "endpoint", "status"])
DURATION = Histogram(
    "http_request_duration_seconds", "HTTP request duration", ["method", "endpoint"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0),
)
IN_PROGRESS = Gauge(
    "http_requests_in_progress", "HTTP requests being handled", ["method", "endpoint"], multiprocess_mode="livesum",
)
DB_POOL_SIZE = Gauge("db_pool_size", "Connections in this worker's pool", multiprocess_mode="livesum")
DB_CONNECTIONS_ACTIVE = Gauge("db_connections_active", "Pool connections in use", multiprocess_mode="livesum")
DB_QUERY_DURATION = Histogram("db_query_duration_seconds", "Duration of the app's database queries", ["query"])
CACHE_ERRORS = Counter("teamflow_cache_errors_total", "Redis calls that failed (each marks Redis down a while)",
                       ["operation"])
DEGRADED = Gauge("teamflow_health_degraded", "1 when the last /health of this process was not ok",
                 multiprocess_mode="livemax")


def render():
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        from prometheus_client import REGISTRY as registry
    return generate_latest(registry), CONTENT_TYPE_LATEST
