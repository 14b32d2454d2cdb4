"""PCA-whitening of embeddings, fitted on a catalogue and stored with its index.

Optionally square-root the components first (power normalisation: the few
strong activations stop drowning the many weak ones), then centre, rotate onto
the catalogue's principal axes, keep the strongest ``dim``
of them, scale each to unit variance, L2-normalise. Directions every catalogue
photo shares (white background, centred object) stop dominating the distance.
Queries must go through the same transform as the index they search, so it is
saved beside the index (``whiten.npz``) and named in its manifest.
"""

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FILE = "whiten.npz"
MANIFEST_KEY = "whitening"
# Square roots first: the power the evaluation found best on the dev catalogue.
DEFAULT_POWER = 0.5


class WhiteningError(Exception):
    """A whitening file that is missing or does not match its index."""


@dataclass(frozen=True)
class Whitening:
    mean: np.ndarray  # (d,)
    projection: np.ndarray  # (d, dim)
    power: float = 1.0  # exponent applied to each component first (1: none)

    @property
    def dim(self) -> int:
        return self.projection.shape[1]

    @property
    def input_dim(self) -> int:
        return self.projection.shape[0]

    def apply(self, vectors: np.ndarray, chunk: int = 4096) -> np.ndarray:
        """(n, d) embeddings -> (n, dim) unit float32 vectors. Rows are taken
        ``chunk`` at a time, so the temporaries stay small for a large catalogue."""
        out = np.empty((len(vectors), self.dim), dtype=np.float32)
        for start in range(0, len(vectors), chunk):
            part = power_normalise(vectors[start : start + chunk], self.power)
            part = (part - self.mean) @ self.projection
            part /= np.linalg.norm(part, axis=1, keepdims=True) + 1e-12
            out[start : start + chunk] = part
        return out

    def save(self, path: Path) -> None:
        with open(path, "wb") as f:
            np.savez(f, mean=self.mean, projection=self.projection, power=self.power)


def power_normalise(vectors: np.ndarray, power: float) -> np.ndarray:
    """sign(x) * |x| ** power, L2-normalised; unchanged when power is 1."""
    x = np.asarray(vectors, np.float32)
    if power == 1.0:
        return x
    x = np.sign(x) * np.abs(x) ** power
    return x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-12)


def fit(
    vectors: np.ndarray,
    dim: int,
    shrink: float = 1e-2,
    power: float = 1.0,
    chunk: int = 4096,
) -> Whitening:
    """Fit on (n, d) catalogue embeddings. ``shrink`` (relative to the largest
    variance) keeps near-empty directions from being blown up. The covariance is
    summed ``chunk`` rows at a time, so a large catalogue needs no float64 copy."""
    n, d = vectors.shape
    if not 1 <= dim <= min(n, d):
        raise ValueError(f"cannot keep {dim} dimensions of {n} x {d}")
    chunks = range(0, n, chunk)
    total = np.zeros(d)
    for start in chunks:
        total += power_normalise(vectors[start : start + chunk], power).sum(axis=0)
    mean = total / n
    covariance = np.zeros((d, d))
    for start in chunks:
        part = power_normalise(vectors[start : start + chunk], power) - mean
        covariance += part.T @ part
    variances, axes = np.linalg.eigh(covariance / n)
    order = np.argsort(variances)[::-1][:dim]
    scale = 1.0 / np.sqrt(variances[order] + shrink * variances.max())
    # Fix each axis's sign so that refitting the same data gives the same transform.
    axes = axes[:, order] * np.sign(axes[np.abs(axes[:, order]).argmax(0), order])
    projection = axes * scale
    return Whitening(
        mean.astype(np.float32), projection.astype(np.float32), float(power)
    )


def load(path: Path) -> Whitening:
    with np.load(path) as data:
        return Whitening(data["mean"], data["projection"], float(data["power"]))


def save_with_index(whitening: Whitening, folder: Path) -> dict:
    """Write the transform into a build folder; returns the manifest entry
    (``manifest["whitening"]``) that names and checks it."""
    path = Path(folder) / FILE
    whitening.save(path)
    return {
        "file": FILE,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "input_dim": whitening.input_dim,
        "dim": whitening.dim,
    }


def load_for_index(folder: Path, manifest: dict) -> Whitening | None:
    """The transform an index's queries need, or None when it has none."""
    entry = manifest.get(MANIFEST_KEY)
    if not entry:
        return None
    if Path(entry["file"]).name != entry["file"]:
        raise WhiteningError(f"the manifest names no usable whitening file: {entry}")
    path = Path(folder) / entry["file"]
    try:
        data = path.read_bytes()
    except OSError as e:
        raise WhiteningError(f"whitening file {path} cannot be read: {e}") from e
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise WhiteningError(f"whitening file {path} does not match its manifest")
    whitening = load(path)
    if (whitening.mean.shape[0], whitening.dim) != (entry["input_dim"], entry["dim"]):
        raise WhiteningError(f"whitening file {path} has the wrong dimensions")
    return whitening
