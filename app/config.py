"""Service settings: defaults in code, overridden by FVS_* environment variables.

Every setting is listed in SETTINGS with its default and a line of help; the
README's settings table is checked against this list by a test.
"""

import os
from dataclasses import dataclass, fields
from pathlib import Path

PREFIX = "FVS_"


@dataclass(frozen=True)
class Setting:
    name: str  # environment variable, with the prefix
    default: str
    help: str


# Read by the Flask app (create_app) in each worker.
APP_SETTINGS = (
    Setting("FVS_INDEX", "indexes/latest", "index folder or the link to it"),
    Setting("FVS_MODELS_DIR", "models", "folder holding the index's model file"),
    Setting("FVS_MAX_UPLOAD_MB", "10", "largest request body in MB (413 above)"),
    Setting("FVS_MAX_PIXELS", "40000000", "largest decoded image (width x height)"),
    Setting("FVS_MAX_IMAGES", "8", "most `image` parts in one search request"),
    Setting(
        "FVS_INDEX_MMAP",
        "1",
        "1: map the index file so that workers share its memory; 0: copy it",
    ),
    Setting("FVS_RELOAD_SECONDS", "2", "how often a worker checks for a new index"),
    Setting(
        "FVS_ORT_THREADS", "", "onnxruntime threads per worker (default: all cores)"
    ),
    Setting(
        "FVS_ORT_SPINNING",
        "0",
        "1: onnxruntime's idle threads busy-wait for work; 0: they sleep",
    ),
    Setting("FVS_FAISS_THREADS", "1", "FAISS OpenMP threads per worker"),
    Setting("FVS_LOG_LEVEL", "INFO", "log level"),
)
# Read by gunicorn.conf.py in the master process.
SERVER_SETTINGS = (
    Setting("FVS_BIND", "127.0.0.1:8000", "address gunicorn listens on"),
    Setting("FVS_WORKERS", "2", "gunicorn worker processes"),
    Setting("FVS_THREADS", "2", "request threads per worker"),
    Setting("FVS_TIMEOUT", "30", "seconds before a silent worker is restarted"),
    Setting("FVS_GRACEFUL_TIMEOUT", "20", "seconds workers get to finish on restart"),
    Setting("FVS_KEEPALIVE", "5", "seconds a keep-alive connection stays open"),
    Setting(
        "FVS_METRICS_DIR",
        "",
        "folder for Prometheus multiprocess files (default: a fresh temp folder)",
    ),
)
SETTINGS = APP_SETTINGS + SERVER_SETTINGS


def env(name: str, environ=None) -> str:
    environ = os.environ if environ is None else environ
    default = next(s.default for s in SETTINGS if s.name == name)
    return environ.get(name, default)


def flag(value: str) -> bool:
    """An on/off setting: off is 0, false, no, off or empty."""
    return value.strip().lower() not in ("0", "", "false", "no", "off")


@dataclass(frozen=True)
class Config:
    index: Path
    models_dir: Path
    max_upload_bytes: int
    max_pixels: int
    max_images: int
    index_mmap: bool
    reload_seconds: float
    ort_threads: int | None
    ort_spinning: bool
    faiss_threads: int
    log_level: str

    @classmethod
    def from_env(cls, environ=None, **overrides) -> "Config":
        def get(name):
            return env(name, environ)

        try:
            values = {
                "index": Path(get("FVS_INDEX")),
                "models_dir": Path(get("FVS_MODELS_DIR")),
                "max_upload_bytes": int(float(get("FVS_MAX_UPLOAD_MB")) * 1024 * 1024),
                "max_pixels": int(get("FVS_MAX_PIXELS")),
                "max_images": int(get("FVS_MAX_IMAGES")),
                "index_mmap": flag(get("FVS_INDEX_MMAP")),
                "reload_seconds": float(get("FVS_RELOAD_SECONDS")),
                "ort_threads": int(get("FVS_ORT_THREADS") or 0) or None,
                "ort_spinning": flag(get("FVS_ORT_SPINNING")),
                "faiss_threads": int(get("FVS_FAISS_THREADS")),
                "log_level": get("FVS_LOG_LEVEL").upper(),
            }
        except ValueError as e:
            raise ValueError(f"a {PREFIX}* setting is not a number: {e}") from e
        unknown = set(overrides) - {f.name for f in fields(cls)}
        if unknown:
            raise TypeError(f"unknown settings: {sorted(unknown)}")
        values.update(overrides)
        return cls(**values)
