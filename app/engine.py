"""The model and the current index of one worker, and swapping in new indexes.

Each worker loads them itself (after gunicorn forks), checks on a short
interval whether the index link now points at another build, and swaps in the
new build only when it loads completely (its whitening included) and was made
with the same model. Query embeddings go through the index's whitening, when it
has one, so that they are searched in the same space as the stored vectors.
Requests keep a reference to the catalogue they started with, so a swap never
fails a request in flight.
"""

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from embedding.model import Embedder
from embedding.preprocess import ImageError, Recipe, open_image
from index_builder.store import IndexReadError, read_index

from . import metrics
from .catalogue import Catalogue, Hit, load_catalogue
from .compat import SetupError, check_model, check_same_model, read_manifest
from .config import Config
from .errors import AppError, from_image_error

log = logging.getLogger(__name__)


@dataclass
class Query:
    """One decoded upload."""

    name: str
    image: object  # PIL image


@dataclass
class Answer:
    catalogue: Catalogue
    hits: list[list[Hit]]
    timings_ms: dict
    images: list = field(default_factory=list)  # the decoded uploads


class Engine:
    def __init__(self, config: Config):
        self.config = config
        self.embedder: Embedder | None = None
        self.catalogue: Catalogue | None = None
        self.problem: str | None = None  # why not ready, or why a swap was refused
        self._seen = None
        self._next_check = 0.0
        self._lock = threading.Lock()

    @property
    def ready(self) -> bool:
        return self.embedder is not None and self.catalogue is not None

    def current(self) -> Catalogue:
        """The catalogue to answer this request with (after a cheap reload check)."""
        self.refresh()
        catalogue = self.catalogue
        if catalogue is None or self.embedder is None:
            raise AppError(503, "not_ready", self.problem or "the index is loading")
        return catalogue

    def refresh(self, force: bool = False) -> None:
        """Swap in a new build behind the index link, if there is one."""
        now = time.monotonic()
        if not force and now < self._next_check:
            return
        if not self._lock.acquire(blocking=force):
            return  # another thread is checking; keep serving what we have
        try:
            self._next_check = now + self.config.reload_seconds
            seen = self._fingerprint()
            if seen != self._seen:
                self._seen = seen
                self._load()
        finally:
            self._lock.release()

    def _fingerprint(self):
        folder = os.path.realpath(self.config.index)
        try:
            stat = os.stat(Path(folder) / "manifest.json")
        except OSError:
            return (folder, None)
        return (folder, stat.st_mtime_ns, stat.st_size)

    def _load(self) -> None:
        started = time.perf_counter()
        try:
            manifest = read_manifest(self.config.index)
            embedder = self._embedder_for(manifest)
            stored = read_index(self.config.index, mmap=self.config.index_mmap)
            if stored.manifest.get("model_card_sha256") != embedder.card.sha256():
                raise SetupError("the index changed while it was being loaded")
            catalogue = load_catalogue(stored)
            warm_up(embedder, catalogue)
        except (SetupError, IndexReadError, KeyError, ValueError) as e:
            outcome = "refused" if self.catalogue else "failed"
            self.problem = str(e)
            metrics.INDEX_RELOADS.labels(outcome=outcome).inc()
            if self.catalogue:
                log.error("%s; still serving %s", e, self.catalogue.stored.path)
            else:
                log.error("not ready: %s", e)
            return

        self.embedder, self.catalogue, self.problem = embedder, catalogue, None
        metrics.INDEX_RELOADS.labels(outcome="loaded").inc()
        log.info(
            "serving index %s: %d items, built %s, model %s%s, loaded in %.2f s",
            stored.path,
            len(catalogue),
            stored.manifest.get("built_at"),
            embedder.card.backbone,
            " (DEMO catalogue)" if catalogue.demo else "",
            time.perf_counter() - started,
        )

    def _embedder_for(self, manifest: dict) -> Embedder:
        recipe = Recipe(**manifest["recipe"]) if manifest.get("recipe") else None
        if self.embedder is not None:
            check_same_model(manifest, self.embedder.card)
            if recipe is None or recipe == self.embedder.recipe:
                return self.embedder
        path, _ = check_model(manifest, self.config.models_dir)
        return Embedder(
            path,
            recipe=recipe,
            threads=self.config.ort_threads,
            spinning=self.config.ort_spinning,
        )

    def decode(self, name: str, data: bytes) -> Query:
        try:
            return Query(name, open_image(data, self.config.max_pixels))
        except ImageError as e:
            raise from_image_error(e, name) from e

    def search(self, data: list[tuple[str, bytes]], k: int, filters: dict) -> Answer:
        """Decode, embed and search a batch of uploads."""
        catalogue = self.current()
        filters = catalogue.check_filters(filters)
        embedder = self.embedder

        started = time.perf_counter()
        images = [self.decode(name, blob).image for name, blob in data]
        batch = np.stack([embedder.prepare(image) for image in images])
        decoded = time.perf_counter()
        vectors = catalogue.query_vectors(embedder.embed(batch))
        embedded = time.perf_counter()
        rows = catalogue.allowed_rows(filters)
        hits = catalogue.find(vectors, k, rows, catalogue.allowed_rows({}))
        searched = time.perf_counter()

        timings = _timings(started, decoded, embedded, searched)
        metrics.observe_stages(timings)
        return Answer(catalogue, hits, timings, images)

    def similar(self, item_id: str, k: int, filters: dict) -> Answer:
        """More like a catalogue item, from its stored vector; never itself or
        its byte-identical copies."""
        catalogue = self.current()
        filters = catalogue.check_filters(filters)
        row = catalogue.row(item_id)

        started = time.perf_counter()
        vector = catalogue.stored.index.reconstruct(row).reshape(1, -1)
        others = catalogue.allowed_rows({}, exclude_group=catalogue.group[row])
        rows = catalogue.allowed_rows(filters, exclude_group=catalogue.group[row])
        hits = catalogue.find(vector, k, rows, others)
        searched = time.perf_counter()

        timings = {"search": _ms(searched - started), "total": _ms(searched - started)}
        metrics.observe_stages({"search": timings["search"]})
        return Answer(catalogue, hits, timings)


def warm_up(embedder: Embedder, catalogue: Catalogue) -> None:
    """One embedding and one search before the first request: onnxruntime sets
    up its buffers, and the index's pages are mapped in, off the request path."""
    recipe = embedder.recipe
    pixels = np.zeros((1, 3, recipe.height, recipe.width), dtype=np.float32)
    vector = catalogue.query_vectors(embedder.embed(pixels))
    rows = catalogue.allowed_rows({})
    catalogue.find(vector, 1, rows, rows)


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def _timings(started, decoded, embedded, searched) -> dict:
    return {
        "decode": _ms(decoded - started),
        "embed": _ms(embedded - decoded),
        "search": _ms(searched - embedded),
        "total": _ms(searched - started),
    }
