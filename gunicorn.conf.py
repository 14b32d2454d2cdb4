"""gunicorn settings for the search service: `gunicorn -c gunicorn.conf.py`.

Every value comes from an FVS_* environment variable (see app/config.py and the
README's settings table). The master process never imports FAISS or
onnxruntime: each worker loads the model and the index itself after the fork
(create_app runs in the worker), because OpenMP thread pools created before a
fork hang in the child.
"""

import os
import shutil
import sys
import tempfile

from app.compat import SetupError, check_model, is_demo, read_manifest
from app.config import env, flag

wsgi_app = "app:create_app()"
preload_app = False  # load per worker, after the fork (see above)

bind = env("FVS_BIND")
workers = int(env("FVS_WORKERS"))
threads = int(env("FVS_THREADS"))
worker_class = "gthread"
timeout = int(env("FVS_TIMEOUT"))
graceful_timeout = int(env("FVS_GRACEFUL_TIMEOUT"))
keepalive = int(env("FVS_KEEPALIVE"))
accesslog = "-"
errorlog = "-"
loglevel = env("FVS_LOG_LEVEL").lower()
# The service does not use gunicorn's control socket, and its fixed default path
# would clash between several instances on one machine (tests, benchmarks).
control_socket_disable = True

# Each worker's onnxruntime may use every core, so that a lone request gets the
# whole machine. Its idle threads sleep instead of busy-waiting
# (FVS_ORT_SPINNING=0), so under load the workers' threads share the cores
# instead of spinning on them: measured, this cuts a lone request's latency by
# a third against one thread per worker and keeps nearly all of the throughput
# (README, "Measured figures (service)"). FAISS searches on one thread per worker.
cores = os.cpu_count() or 1
os.environ.setdefault("FVS_ORT_THREADS", str(cores))
os.environ.setdefault("OMP_NUM_THREADS", env("FVS_FAISS_THREADS"))

# Prometheus multiprocess mode: workers write their metrics into files here and
# /metrics sums them. The folder is emptied at start so old counts do not leak in.
metrics_dir = env("FVS_METRICS_DIR") or tempfile.mkdtemp(prefix="fvs-metrics-")
shutil.rmtree(metrics_dir, ignore_errors=True)
os.makedirs(metrics_dir, exist_ok=True)
os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir


def on_starting(server):
    """Refuse to start on a missing index or model, before forking anyone."""
    index = env("FVS_INDEX")
    try:
        manifest = read_manifest(index)
        model, card = check_model(manifest, env("FVS_MODELS_DIR"))
    except SetupError as e:
        server.log.error("cannot start: %s", e)
        sys.exit(1)
    demo = " (DEMO catalogue of generated drawings)" if is_demo(manifest) else ""
    server.log.info(
        "index %s: %s items, built %s from %s%s; model %s (%s); %d workers x %d "
        "threads, %s onnxruntime threads each (idle ones %s)",
        os.path.realpath(index),
        manifest.get("item_count"),
        manifest.get("built_at"),
        manifest.get("source"),
        demo,
        model,
        card.backbone,
        workers,
        threads,
        os.environ["FVS_ORT_THREADS"],
        "spin" if flag(env("FVS_ORT_SPINNING")) else "sleep",
    )


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
