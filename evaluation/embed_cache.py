"""Embedding a catalogue for the variants study, pooled two ways, cached on disk."""

import hashlib
import logging
import time
from pathlib import Path

import numpy as np

from embedding.preprocess import Recipe, load

log = logging.getLogger("evaluation.variants")

BATCH = 64
GEM_P = 3.0


def gem(features: np.ndarray, p: float = GEM_P) -> np.ndarray:
    """Generalised-mean pooling of (N, C, h, w) maps -> unit (N, C) vectors."""
    pooled = np.mean(np.maximum(features, 1e-6) ** p, axis=(2, 3)) ** (1.0 / p)
    return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def embed_all(session, paths, recipe, card, mirror: bool) -> dict[str, np.ndarray]:
    """Average- and GeM-pooled embeddings of every image (and of its mirror)."""
    out: dict[str, list] = {"avg": [], "gem": [], "avg_mirror": [], "gem_mirror": []}
    started = time.perf_counter()
    for start in range(0, len(paths), BATCH):
        batch = np.stack(
            [load(p, recipe, card.mean, card.std) for p in paths[start : start + BATCH]]
        )
        inputs = [("", batch)] + ([("_mirror", batch[..., ::-1])] if mirror else [])
        for suffix, x in inputs:
            pooled, features = session.run(
                ["embedding", "features"], {"pixels": np.ascontiguousarray(x)}
            )
            out["avg" + suffix].append(pooled)
            out["gem" + suffix].append(gem(features))
        if start // BATCH % 20 == 0:
            done = min(start + BATCH, len(paths))
            rate = done / (time.perf_counter() - started)
            log.info("%s: %d/%d images (%.0f img/s)", recipe, done, len(paths), rate)
    return {k: np.concatenate(v) for k, v in out.items() if v}


def cache_key(card, recipe: Recipe, mirror: bool, count: int) -> str:
    """What an embedding file depends on. Recipes without cropping keep the
    spelling they had before cropping existed, so their cached files stay valid."""
    spelt = repr(recipe)
    if not recipe.crop:
        spelt = spelt.replace(", crop=False", "")
    return f"{card.sha256()}|{spelt}|{mirror}|{count}"


def cached_embeddings(cache: Path, key: str, compute) -> dict[str, np.ndarray]:
    path = cache / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"
    if path.exists():
        with np.load(path) as data:
            return dict(data)
    result = compute()
    np.savez(path, **result)
    return result
