"""Building small indexes for the service's tests with index_builder.store
directly: generated demo images, embedded with a random-weight model."""

import functools
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import requests

from demo.catalogue import generate
from embedding import whiten
from embedding.model import Embedder
from embedding.preprocess import Recipe
from index_builder import store

ROOT = Path(__file__).resolve().parent.parent
GUNICORN = Path(sys.executable).parent / "gunicorn"
TEST_RECIPE = Recipe(height=96, width=72)  # small input: quick with random weights


@functools.cache
def _embedder(model: Path, recipe: Recipe) -> Embedder:
    return Embedder(model, recipe=recipe, threads=1)


@functools.cache
def _embed(embedder: Embedder, paths: tuple[Path, ...]) -> np.ndarray:
    """Vectors of image files; cached, as many tests build over the same images."""
    vectors = embedder.embed(np.stack([embedder.load(path) for path in paths]))
    vectors.setflags(write=False)
    return vectors


def make_catalogue(folder: Path, count: int = 40, seed: int = 0, copies=()) -> Path:
    """A demo catalogue; ``copies`` are (new_id, existing_id) byte-identical images
    appended to styles.csv with the existing item's metadata."""
    rows = generate(folder, count=count, seed=seed)
    by_id = {row["id"]: row for row in rows}
    with open(folder / "styles.csv", "a") as f:
        for new_id, existing in copies:
            shutil.copy(
                folder / "images" / f"{existing}.jpg",
                folder / "images" / f"{new_id}.jpg",
            )
            row = {**by_id[existing], "id": new_id}
            f.write(",".join(row.values()) + "\n")
    return folder


def read_styles(folder: Path) -> list[dict]:
    import csv

    with open(folder / "styles.csv", newline="") as f:
        return list(csv.DictReader(f))


def build_index(
    catalogue: Path,
    model: Path,
    link: Path,
    recipe: Recipe = TEST_RECIPE,
    manifest_extra: dict | None = None,
    vectors: np.ndarray | None = None,
    damage=None,
    whiten_dim: int = 0,
) -> Path:
    """Embed every image of ``catalogue`` and publish the build at ``link``,
    PCA-whitened to ``whiten_dim`` dimensions when given (fitted on the distinct
    images); ``damage(folder)`` runs on the complete build just before it goes
    live."""
    styles = read_styles(catalogue)
    embedder = _embedder(model, recipe)
    items = {column: [] for column in (*store.BASE_COLUMNS, *store.STYLE_COLUMNS)}
    first_of_hash: dict[str, str] = {}
    batch = []
    for row in styles:
        path = catalogue / "images" / f"{row['id']}.jpg"
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        original = first_of_hash.setdefault(digest, row["id"])
        items["id"].append(row["id"])
        items["path"].append(f"images/{row['id']}.jpg")
        items["sha256"].append(digest)
        items["dup_of"].append("" if original == row["id"] else original)
        for column in store.STYLE_COLUMNS:
            items[column].append(row.get(column, ""))
        batch.append(path)
    if vectors is None:
        vectors = _embed(embedder, tuple(batch))

    folder = store.build_dir_for(link)
    raw, entry = None, None
    if whiten_dim:
        distinct = vectors[[n for n, d in enumerate(items["dup_of"]) if not d]]
        whitening = whiten.fit(distinct, whiten_dim, power=whiten.DEFAULT_POWER)
        entry = whiten.save_with_index(whitening, folder)
        raw, vectors = vectors, whitening.apply(vectors)

    manifest = {
        "backbone": embedder.card.backbone,
        "embedding_dim": vectors.shape[1],
        "model_dim": embedder.dim,
        whiten.MANIFEST_KEY: entry,
        "model_card_sha256": embedder.card.sha256(),
        "model_file": embedder.model_path.name,
        "variant": embedder.card.variant,
        "recipe": recipe.to_dict(),
        "source": str(catalogue),
        "built_at": "2026-12-03T12:00:00+00:00",
        "build_seconds": 0.1,
        "skipped": {},
        "duplicates": sum(1 for d in items["dup_of"] if d),
        **(manifest_extra or {}),
    }
    store.write_build(folder, vectors, items, manifest, raw=raw)
    if damage:
        damage(folder)
    store.publish(folder, link)
    return link


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_gunicorn(index, models_dir, tmp_path, **env):
    port = free_port()
    environ = {
        **os.environ,
        "FVS_INDEX": str(index),
        "FVS_MODELS_DIR": str(models_dir),
        "FVS_BIND": f"127.0.0.1:{port}",
        "FVS_WORKERS": "2",
        "FVS_THREADS": "2",
        "FVS_METRICS_DIR": str(tmp_path / "metrics"),
        **env,
    }
    log = tmp_path / "gunicorn.log"
    with open(log, "w") as out:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            [str(GUNICORN), "-c", "gunicorn.conf.py"],
            cwd=ROOT,
            env=environ,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return process, f"http://127.0.0.1:{port}", log


def wait_ready(process, url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"gunicorn exited with {process.returncode}")
        try:
            if requests.get(f"{url}/readyz", timeout=10).status_code == 200:
                return
        except (requests.ConnectionError, requests.Timeout):
            pass
        time.sleep(0.2)
    raise AssertionError(f"gunicorn not ready after {timeout} s")


def stop_gunicorn(process) -> int:
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
        raise
