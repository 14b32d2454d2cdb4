"""On-disk layout of a built index, shared by the builder, the service and the
evaluation.

``indexes/<name>`` is a symbolic link to one complete build folder in
``indexes/<name>.builds/``. A build is written into a fresh folder and the link
is replaced with one atomic rename, so a reader sees either the old index or the
new one, never a half-written one. A build folder holds:

- ``index.faiss``: an ``IndexFlatL2`` over the unit-length vectors the service
  searches (whitened when the manifest has a ``whitening`` entry); row ``i`` is
  item ``i``.
- ``prescan.faiss``: the same vectors as 16-bit floats, which make exact search
  read half the bytes (``index_builder/prescan.py``); the manifest's ``prescan``
  entry holds its largest error. Builds without it are searched by the float32
  index alone.
- ``whiten.npz`` (when whitened): the PCA-whitening fitted on this catalogue,
  which queries go through before the search (``embedding/whiten.py``).
- ``raw.npy`` (when whitened): the model's own unit float32 embeddings, row ``i``
  for item ``i``. The next build reuses them for unchanged images and fits the
  whitening again; float32 so that a reused vector is bit for bit the one the
  model gave, and an incremental build fits the same whitening as a full one.
- ``items.json``: the items' metadata as columns (``{"id": [...], ...}``). Columns
  load with the standard library in tens of milliseconds for 44k items and turn
  straight into numpy arrays for filtering, with no extra dependency.
- ``manifest.json``: what built it (model, recipe, source, counts, skips).
"""

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from embedding import whiten

from . import prescan

FORMAT_VERSION = 1
INDEX_FILE = "index.faiss"
ITEMS_FILE = "items.json"
MANIFEST_FILE = "manifest.json"
RAW_FILE = "raw.npy"
KEEP_BUILDS = 2  # the live build and the one before it
# Columns every index has; catalogue metadata columns come after them.
BASE_COLUMNS = ("id", "path", "sha256", "dup_of")
STYLE_COLUMNS = (
    "gender",
    "masterCategory",
    "subCategory",
    "articleType",
    "baseColour",
    "season",
    "year",
    "usage",
    "productDisplayName",
)


class IndexReadError(Exception):
    """An index folder that is missing, incomplete or inconsistent."""


@dataclass
class StoredIndex:
    path: Path  # the resolved build folder
    index: faiss.Index
    items: dict[str, list]
    manifest: dict
    whitening: whiten.Whitening | None = None  # what queries go through first
    first_pass: prescan.Prescan | None = None  # 16-bit pass of exact search

    def __len__(self) -> int:
        return self.index.ntotal

    def vectors(self) -> np.ndarray:
        """All stored embeddings as an (n, dim) float32 array (a view, no copy)."""
        flat = faiss.rev_swig_ptr(self.index.get_xb(), self.index.ntotal * self.index.d)
        return np.asarray(flat).reshape(self.index.ntotal, self.index.d)

    def raw_vectors(self) -> np.ndarray | None:
        """The model's own embeddings, row ``i`` for item ``i`` (memory-mapped):
        ``raw.npy`` for a whitened index, the stored vectors for one that is not,
        None when a whitened index has no readable raw file."""
        if self.whitening is None:
            return self.vectors()
        try:
            raw = np.load(self.path / RAW_FILE, mmap_mode="r")
        except (OSError, ValueError):
            return None
        if raw.dtype != np.float32 or raw.shape != (
            len(self),
            self.whitening.input_dim,
        ):
            return None
        return raw


def build_dir_for(link: Path) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%S")
    root = link.parent / f"{link.name}.builds"
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{stamp}-", dir=root))


def write_build(
    folder: Path,
    vectors: np.ndarray,
    items: dict,
    manifest: dict,
    raw: np.ndarray | None = None,
) -> None:
    """Write a complete build into ``folder`` (not yet live). ``raw``: the model's
    embeddings before whitening, kept for the next build."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    count = len(items["id"])
    if vectors.shape[0] != count:
        raise ValueError(f"{vectors.shape[0]} vectors for {count} items")
    for name, column in items.items():
        if len(column) != count:
            raise ValueError(
                f"column {name!r} has {len(column)} values for {count} items"
            )
    index = faiss.IndexFlatL2(vectors.shape[1])
    index.add(vectors)
    faiss.write_index(index, str(folder / INDEX_FILE))
    del index  # its own copy of the vectors: free before the 16-bit one is made
    first_pass = prescan.build(vectors)
    faiss.write_index(first_pass.index, str(folder / prescan.FILE))
    max_error = first_pass.max_error
    del first_pass
    if raw is not None:
        if raw.shape[0] != count:
            raise ValueError(f"{raw.shape[0]} raw vectors for {count} items")
        np.save(folder / RAW_FILE, np.ascontiguousarray(raw, dtype=np.float32))
    _write_json(folder / ITEMS_FILE, items)
    manifest = {
        **manifest,
        "format_version": FORMAT_VERSION,
        "item_count": count,
        "prescan": {"file": prescan.FILE, "max_error": max_error},
    }
    manifest.setdefault("embedding_dim", int(vectors.shape[1]))
    _write_json(folder / MANIFEST_FILE, manifest)  # written last: marks it complete


def publish(folder: Path, link: Path) -> None:
    """Make ``folder`` the live index behind ``link`` with one atomic rename."""
    link = Path(link)
    tmp = link.parent / f".{link.name}.link-{os.getpid()}"
    tmp.unlink(missing_ok=True)
    os.symlink(os.path.relpath(folder, link.parent), tmp)
    os.replace(tmp, link)
    _fsync_dir(link.parent)
    latest = link.parent / "latest"
    if link.name != "latest" and (not latest.exists() or latest.is_symlink()):
        tmp_latest = link.parent / f".latest.link-{os.getpid()}"
        tmp_latest.unlink(missing_ok=True)
        os.symlink(link.name, tmp_latest)
        os.replace(tmp_latest, latest)
    prune_builds(link)


def prune_builds(link: Path, keep: int = KEEP_BUILDS) -> None:
    """Delete old build folders, never the live one."""
    root = link.parent / f"{link.name}.builds"
    live = link.resolve()
    builds = sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.name)
    complete = [p for p in builds if (p / MANIFEST_FILE).exists()]
    for old in builds:
        if old != live and (old not in complete[-keep:]):
            shutil.rmtree(old, ignore_errors=True)


def read_manifest(path: Path) -> dict:
    path = Path(path).resolve()
    try:
        return json.loads((path / MANIFEST_FILE).read_text())
    except FileNotFoundError as e:
        raise IndexReadError(f"no index at {path}: run 'make index'") from e
    except ValueError as e:
        raise IndexReadError(f"{path / MANIFEST_FILE} is not valid JSON: {e}") from e


def read_index(path: Path, mmap: bool = False) -> StoredIndex:
    """Load a build (or the link to one) and check that its parts agree."""
    folder = Path(path).resolve()
    manifest = read_manifest(folder)
    try:
        # mmap: the vectors stay in the file's pages (no copy), so processes that
        # read the same build share one copy through the page cache.
        flags = faiss.IO_FLAG_MMAP_IFC if mmap else 0
        index = faiss.read_index(str(folder / INDEX_FILE), flags)
        items = json.loads((folder / ITEMS_FILE).read_text())
    except (RuntimeError, OSError, ValueError) as e:
        raise IndexReadError(f"index at {folder} cannot be read: {e}") from e
    count = manifest.get("item_count")
    if index.ntotal != count or any(len(c) != count for c in items.values()):
        raise IndexReadError(
            f"index at {folder} is inconsistent: manifest says {count} items, "
            f"index has {index.ntotal}"
        )
    if index.d != manifest.get("embedding_dim"):
        raise IndexReadError(
            f"index at {folder} has dimension {index.d}, manifest says "
            f"{manifest.get('embedding_dim')}"
        )
    return StoredIndex(
        folder,
        index,
        items,
        manifest,
        _read_whitening(folder, manifest),
        _read_prescan(folder, manifest, index, flags),
    )


def _read_prescan(folder: Path, manifest: dict, index, flags: int):
    """The build's 16-bit first pass, checked against its float32 index; None
    for builds made before there was one."""
    entry = manifest.get("prescan")
    if entry is None:
        return None
    try:
        first_pass = prescan.Prescan(
            faiss.read_index(str(folder / prescan.FILE), flags),
            float(entry["max_error"]),
        )
        first_pass.check(index)
    except (RuntimeError, OSError, ValueError, KeyError, TypeError) as e:
        raise IndexReadError(f"index at {folder} cannot be read: {e}") from e
    return first_pass


def _read_whitening(folder: Path, manifest: dict) -> whiten.Whitening | None:
    """The index's whitening, checked against its manifest and its vectors."""
    try:
        whitening = whiten.load_for_index(folder, manifest)
    except (whiten.WhiteningError, OSError, ValueError, KeyError) as e:
        raise IndexReadError(f"index at {folder} cannot be read: {e}") from e
    model_dim = manifest.get("model_dim", manifest.get("embedding_dim"))
    searched_dim = whitening.dim if whitening else model_dim
    input_dim = whitening.input_dim if whitening else model_dim
    if (input_dim, searched_dim) != (model_dim, manifest.get("embedding_dim")):
        raise IndexReadError(
            f"index at {folder} is inconsistent: its whitening maps {input_dim}-d "
            f"model vectors to {searched_dim}-d ones, the manifest says "
            f"{model_dim}-d and {manifest.get('embedding_dim')}-d"
        )
    return whitening


def _write_json(path: Path, data) -> None:
    with open(path, "w") as f:
        json.dump(data, f, separators=(",", ":"))
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
