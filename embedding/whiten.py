"""PCA-whitening of embeddings, fitted on a catalogue and stored with its index.

Centre, rotate onto the catalogue's principal axes, keep the strongest ``dim``
of them, scale each to unit variance, L2-normalise. Directions every catalogue
photo shares (white background, centred object) stop dominating the distance.
Queries must go through the same transform as the index they search, so it is
saved beside the index (``whiten.npz``) and named in its manifest.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

FILE = "whiten.npz"


@dataclass(frozen=True)
class Whitening:
    mean: np.ndarray  # (d,)
    projection: np.ndarray  # (d, dim)

    @property
    def dim(self) -> int:
        return self.projection.shape[1]

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        """(n, d) embeddings -> (n, dim) unit float32 vectors."""
        out = (np.asarray(vectors, np.float32) - self.mean) @ self.projection
        out /= np.linalg.norm(out, axis=1, keepdims=True) + 1e-12
        return out.astype(np.float32, copy=False)

    def save(self, path: Path) -> None:
        with open(path, "wb") as f:
            np.savez(f, mean=self.mean, projection=self.projection)


def fit(vectors: np.ndarray, dim: int, shrink: float = 1e-4) -> Whitening:
    """Fit on (n, d) catalogue embeddings. ``shrink`` (relative to the largest
    variance) keeps near-empty directions from being blown up."""
    x = np.asarray(vectors, np.float64)
    if not 1 <= dim <= min(x.shape):
        raise ValueError(f"cannot keep {dim} dimensions of {x.shape[0]} x {x.shape[1]}")
    mean = x.mean(axis=0)
    centred = x - mean
    variances, axes = np.linalg.eigh(centred.T @ centred / len(x))
    order = np.argsort(variances)[::-1][:dim]
    scale = 1.0 / np.sqrt(variances[order] + shrink * variances.max())
    # Fix each axis's sign so that refitting the same data gives the same transform.
    axes = axes[:, order] * np.sign(axes[np.abs(axes[:, order]).argmax(0), order])
    projection = axes * scale
    return Whitening(mean.astype(np.float32), projection.astype(np.float32))


def load(path: Path) -> Whitening:
    with np.load(path) as data:
        return Whitening(data["mean"], data["projection"])
