"""Building an index: catalogue -> embeddings -> a new build folder -> published.

The steps:

1. read the catalogue (``catalogue.py``);
2. hash every image file (sha256 of its bytes); byte-identical copies are embedded
   once and marked with ``dup_of``;
3. take the vectors of unchanged images from the live index when it was built
   with the same model and recipe (unless ``full``);
4. embed the rest in batches: a few threads decode and resize the next batches
   while onnxruntime (which releases the GIL) runs the current one;
5. fit PCA-whitening on the catalogue's distinct images (again on every build)
   and whiten the vectors the index stores; the model's own vectors are kept
   beside them for the next build;
6. augment the whitened vectors with their catalogue neighbours (database-side
   augmentation, ``embedding/augment.py``), again from the model's vectors on
   every build, and name the query expansion the service applies;
7. write everything into a fresh build folder and swap it in atomically. Any
   failure or Ctrl-C before the swap removes the partial folder and leaves the
   live index as it was.
"""

import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from tqdm import tqdm

from embedding import augment, whiten
from embedding.model import Embedder
from embedding.preprocess import ImageError, Recipe

from . import store
from .catalogue import Catalogue, CatalogueItem, read_catalogue

log = logging.getLogger(__name__)

SKIPPED_FILE = "skipped.json"
DEFAULT_BATCH_SIZE = 16  # as fast as 32 here, and ~330 MB less for ResNet50
DEFAULT_WHITEN_DIM = 768  # best of 256/512/768 on the dev catalogue
# Fourth roots before whitening: better than square roots at 768 dimensions on
# the dev catalogue (articleType P@5 0.7961 against 0.7936).
WHITEN_POWER = 0.25
# Database-side augmentation and query expansion of a whitened index: the
# settings the evaluation found best on the dev catalogue.
AUGMENTATION = {"k": 10, "alpha": 2.0}
QUERY_EXPANSION = {"answers": 2, "alpha": 3.0}
# A smaller catalogue is stored unwhitened (measured, see whitening_dim).
MIN_WHITEN_IMAGES = 2000
WHITEN_IMAGES_PER_DIM = 4  # distinct images needed per whitened dimension


class BuildError(Exception):
    """A build that cannot start or finish; the live index is unchanged."""


@dataclass
class Skip:
    id: str
    path: str
    reason: str  # empty, unreadable, not_an_image, truncated, too_large
    message: str


@dataclass(frozen=True)
class BuildOptions:
    """What a build does besides embedding (see ``build_index``)."""

    batch_size: int = DEFAULT_BATCH_SIZE
    full: bool = False
    progress: bool = True
    whiten_dim: int = DEFAULT_WHITEN_DIM
    augmentation: bool = True
    query_expansion: bool = True


@dataclass
class BuildResult:
    path: Path  # the published build folder
    manifest: dict
    skipped: list[Skip] = field(default_factory=list)


def build_index(
    catalogue_dir: Path,
    model_path: Path,
    out: Path,
    batch_size: int = DEFAULT_BATCH_SIZE,
    full: bool = False,
    threads: int | None = None,
    recipe: Recipe | None = None,
    progress: bool = True,
    whiten_dim: int = DEFAULT_WHITEN_DIM,
    augmentation: bool = True,
    query_expansion: bool = True,
) -> BuildResult:
    """Embed the catalogue in ``catalogue_dir`` and publish it at ``out``.

    Parameters:
        catalogue_dir: a Kaggle-layout catalogue or a folder of images.
        model_path: the ``.onnx`` model; its card must be beside it.
        out: the index link, e.g. ``indexes/fashion``.
        batch_size: images per onnxruntime call.
        full: embed every image even when the live index has its vector.
        threads: onnxruntime intra-op threads (default: all cores).
        recipe: input preparation (default: the model card's).
        progress: show a progress bar.
        whiten_dim: dimensions to PCA-whiten the stored vectors to (0: none);
            fewer when the catalogue is too small for them (see
            ``whitening_dim``).
        augmentation: store each whitened vector augmented with its catalogue
            neighbours (``AUGMENTATION``); only for a whitened index.
        query_expansion: have the service expand queries with their best
            answers (``QUERY_EXPANSION``); only for a whitened index.

    Raises:
        CatalogueError: the catalogue folder cannot be read.
        BuildError: another build of ``out`` is running.
    """
    started = time.perf_counter()
    options = BuildOptions(
        batch_size, full, progress, whiten_dim, augmentation, query_expansion
    )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    catalogue = read_catalogue(catalogue_dir)
    embedder = Embedder(model_path, recipe=recipe, threads=threads)
    if embedder.card.random_weights:
        log.warning(
            "RANDOM WEIGHTS: %s was exported without trained weights; this index "
            "is for tests only and its search results mean nothing",
            model_path,
        )

    with _build_lock(out):
        folder = store.build_dir_for(out)
        folder.chmod(0o755)  # mkdtemp makes it private; the service may be another user
        try:
            result = _build_into(folder, catalogue, embedder, out, options, started)
            store.publish(folder, out)
        except BaseException:
            if out.resolve() != folder.resolve():  # never delete what went live
                shutil.rmtree(folder, ignore_errors=True)
            raise
    log.info(summary_line(out, result.manifest))
    return result


def _build_into(folder, catalogue, embedder, out, options: BuildOptions, started):
    hashes, skipped = hash_files(catalogue)
    previous = LiveVectors() if options.full else reusable_vectors(out, embedder)

    canonical: dict[str, CatalogueItem] = {}
    for item in catalogue.items:
        if item.id in hashes:
            canonical.setdefault(hashes[item.id], item)
    # One row per distinct image, filled from the live index, then by embedding.
    slots = {sha: n for n, sha in enumerate(canonical)}
    unique = np.empty((len(slots), embedder.dim), dtype=np.float32)
    todo = []
    for sha, item in canonical.items():
        if sha in previous:
            unique[slots[sha]] = previous[sha]
        else:
            todo.append(item)
    reused = len(canonical) - len(todo)
    del previous  # frees the live index's vectors before the model's buffers grow

    def keep(batch, vectors):
        unique[[slots[hashes[i.id]] for i in batch]] = vectors

    embed_started = time.perf_counter()
    failed = embed_items(
        catalogue, todo, embedder, options.batch_size, options.progress, keep
    )
    embed_seconds = time.perf_counter() - embed_started
    embedder.session = None  # onnxruntime's buffers are not needed for writing
    for item, error in failed.items():
        skipped.append(Skip(item.id, item.path, error.reason, str(error)))
    failed_hashes = {hashes[item.id] for item in failed}

    kept, dup_of = [], []
    for item in catalogue.items:
        sha = hashes.get(item.id)
        if sha is None:
            continue
        first = canonical[sha]
        if sha in failed_hashes:
            if item is not first:  # a byte-identical copy of a file that failed
                error = failed[first]
                skipped.append(Skip(item.id, item.path, error.reason, str(error)))
            continue
        kept.append(item)
        dup_of.append("" if item is first else first.id)
    matrix = unique[[slots[hashes[i.id]] for i in kept]]
    unique = None  # only the rows in item order are kept

    items = {
        "id": [i.id for i in kept],
        "path": [i.path for i in kept],
        "sha256": [hashes[i.id] for i in kept],
        "dup_of": dup_of,
    }
    for column in catalogue.columns:
        items[column] = [i.metadata.get(column, "") for i in kept]

    distinct = matrix[[n for n, d in enumerate(dup_of) if not d]]
    whitening, note = fit_whitening(distinct, options.whiten_dim)
    del distinct
    searched = whitening.apply(matrix) if whitening else matrix
    augmented = AUGMENTATION if whitening and options.augmentation else None
    if augmented:
        searched = augment_vectors(searched, items["sha256"], **augmented)
    expansion = QUERY_EXPANSION if whitening and options.query_expansion else None

    skipped.sort(key=lambda s: s.id)
    _write_skips(folder / SKIPPED_FILE, skipped)
    manifest = {
        "backbone": embedder.card.backbone,
        "embedding_dim": int(searched.shape[1]),
        "model_dim": embedder.dim,
        whiten.MANIFEST_KEY: whiten.save_with_index(whitening, folder)
        if whitening
        else None,
        "whitening_note": note,
        "augmentation": dict(augmented) if augmented else None,
        "query_expansion": dict(expansion) if expansion else None,
        "model_card_sha256": embedder.card.sha256(),
        "model_file": embedder.model_path.name,
        "variant": embedder.card.variant,
        "random_weights": embedder.card.random_weights,
        "recipe": embedder.recipe.to_dict(),
        "source": str(catalogue.root),
        "layout": catalogue.layout,
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "embedded": len(todo) - len(failed),
        "reused": reused,
        "embed_seconds": round(embed_seconds, 3),
        "duplicates": sum(1 for d in dup_of if d),
        "skipped": dict(sorted(Counter(s.reason for s in skipped).items())),
        "catalogue": catalogue.quirk_counts(),
    }
    manifest["build_seconds"] = round(time.perf_counter() - started, 3)
    store.write_build(
        folder, searched, items, manifest, raw=matrix if whitening else None
    )
    return BuildResult(folder, store.read_manifest(folder), skipped)


def whitening_dim(requested: int, images: int, model_dim: int) -> tuple[int, str]:
    """How many dimensions to whiten to (0: none) for ``images`` distinct images,
    and the reason in words. On subsets of the dev catalogue, a whitening fitted
    on fewer than ~2,000 images found worse neighbours than none (300 images:
    articleType P@5 0.499 against 0.536), and 512 dimensions were as good as
    256 from 2,000 images on; hence ``MIN_WHITEN_IMAGES`` and at least
    ``WHITEN_IMAGES_PER_DIM`` images per dimension."""
    if requested <= 0:
        return 0, "not whitened (turned off)"
    if images < MIN_WHITEN_IMAGES:
        return 0, (
            f"not whitened: {images} distinct images, fewer than the "
            f"{MIN_WHITEN_IMAGES} a whitening needs to find better neighbours"
        )
    dim = min(requested, model_dim, images // WHITEN_IMAGES_PER_DIM)
    if dim == requested:
        return dim, f"whitened to {dim}-d"
    if dim == model_dim:
        return dim, f"whitened to {dim}-d, not {requested}: the model has {dim}"
    return dim, f"whitened to {dim}-d, not {requested}: {images} distinct images"


def fit_whitening(distinct: np.ndarray, requested: int):
    """PCA-whitening fitted on the catalogue's distinct images' embeddings (or
    None) and the note saying what was decided."""
    dim, note = whitening_dim(requested, len(distinct), distinct.shape[1])
    if not dim:
        log.info(note)
        return None, note
    started = time.perf_counter()
    whitening = whiten.fit(distinct, dim, power=WHITEN_POWER)
    log.info(
        "%s, fitted on %d distinct images in %.2f s",
        note,
        len(distinct),
        time.perf_counter() - started,
    )
    return whitening, note


def augment_vectors(
    vectors: np.ndarray, sha256: list[str], k: int, alpha: float
) -> np.ndarray:
    """The whitened ``vectors`` augmented with their ``k`` nearest catalogue
    neighbours; rows with the same sha256 (byte-identical copies) are not each
    other's neighbours."""
    started = time.perf_counter()
    _, groups = np.unique(np.asarray(sha256, dtype=object), return_inverse=True)
    out = augment.augment(vectors, k=k, alpha=alpha, groups=groups)
    log.info(
        "augmented %d vectors with %d neighbours each in %.2f s",
        len(out),
        k,
        time.perf_counter() - started,
    )
    return out


def hash_files(catalogue: Catalogue) -> tuple[dict[str, str], list[Skip]]:
    """sha256 of every image file by item id; empty and unreadable files skipped."""
    hashes, skipped = {}, []
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = pool.map(lambda i: _hash_file(catalogue.file(i)), catalogue.items)
        for item, (sha, problem) in zip(catalogue.items, results, strict=True):
            if problem:
                skipped.append(Skip(item.id, item.path, *problem))
            else:
                hashes[item.id] = sha
    return hashes, skipped


def _hash_file(path: Path):
    try:
        data = path.read_bytes()
    except OSError as e:
        return None, ("unreadable", f"cannot read the file: {e.strerror or e}")
    if not data:
        return None, ("empty", "the file is empty")
    return hashlib.sha256(data).hexdigest(), None


class LiveVectors:
    """The live index's vectors by content hash (empty when none can be reused)."""

    def __init__(self, live: store.StoredIndex | None = None):
        self.live = live  # owns the memory the vectors are read from
        self.rows = {}
        if live is not None:
            self.rows = {sha: n for n, sha in enumerate(live.items["sha256"])}
            self.vectors = live.raw_vectors()

    def __contains__(self, sha: str) -> bool:
        return sha in self.rows

    def __getitem__(self, sha: str) -> np.ndarray:
        return self.vectors[self.rows[sha]]


def reusable_vectors(out: Path, embedder: Embedder) -> LiveVectors:
    """The live index's model vectors (before whitening), when it was built with
    the same model and recipe."""
    if not out.exists():
        return LiveVectors()
    try:
        live = store.read_index(out)
    except store.IndexReadError as e:
        log.warning("the live index cannot be reused, embedding everything: %s", e)
        return LiveVectors()
    manifest = live.manifest
    if manifest.get("model_card_sha256") != embedder.card.sha256():
        log.info("the model changed since the live index was built: embedding all")
        return LiveVectors()
    if manifest.get("recipe") != embedder.recipe.to_dict():
        log.info("the input recipe changed since the live index: embedding all")
        return LiveVectors()
    if live.raw_vectors() is None:
        log.warning(
            "the live index has no readable %s beside its whitened vectors: "
            "embedding all",
            store.RAW_FILE,
        )
        return LiveVectors()
    return LiveVectors(live)


def embed_items(catalogue, items, embedder, batch_size, progress, keep):
    """Embed ``items`` in batches, decoding ahead on worker threads.

    ``keep(batch, vectors)`` receives each batch's embedded items and vectors.
    Returns {item: ImageError} for the items that could not be decoded.
    """
    failed: dict[CatalogueItem, ImageError] = {}
    batches = [items[i : i + batch_size] for i in range(0, len(items), batch_size)]
    workers = max(1, min(4, os.cpu_count() or 1))
    pending: deque[Future] = deque()
    bar = tqdm(
        total=len(items),
        unit="img",
        desc="embedding",
        disable=not progress or not items,
        smoothing=0.1,
    )
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode")
    try:
        upcoming = iter(batches)
        for batch in _take(upcoming, workers + 1):
            pending.append(pool.submit(_prepare_batch, catalogue, batch, embedder))
        while pending:
            batch, inputs, errors = pending.popleft().result()
            for batch_ahead in _take(upcoming, 1):
                pending.append(
                    pool.submit(_prepare_batch, catalogue, batch_ahead, embedder)
                )
            failed.update(errors)
            good = [item for item in batch if item not in errors]
            if good:
                keep(good, embedder.embed(np.stack(inputs)))
            bar.update(len(batch))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
    return failed


def _prepare_batch(catalogue, batch, embedder):
    inputs, errors = [], {}
    for item in batch:
        try:
            data = catalogue.file(item).read_bytes()
            inputs.append(embedder.load(data))
        except ImageError as e:
            errors[item] = e
        except OSError as e:
            errors[item] = ImageError("unreadable", f"cannot read the file: {e}")
    return batch, inputs, errors


def _take(iterator, n):
    for _ in range(n):
        value = next(iterator, None)
        if value is None:
            return
        yield value


def _write_skips(path: Path, skipped: list[Skip]) -> None:
    data = [vars(s) for s in skipped]
    path.write_text(json.dumps(data, indent=1) + "\n")


def read_skips(build: Path) -> list[dict]:
    """The skip report of a build (or of the link to one)."""
    return json.loads((Path(build).resolve() / SKIPPED_FILE).read_text())


def summary_line(out: Path, manifest: dict) -> str:
    skipped = manifest["skipped"]
    skip_text = ", ".join(f"{k}={v}" for k, v in skipped.items()) or "none"
    rate = (
        manifest["embedded"] / manifest["embed_seconds"] if manifest["embedded"] else 0
    )
    return (
        f"built {out}: {manifest['item_count']} items "
        f"({manifest['embedded']} embedded at {rate:.1f} img/s, "
        f"{manifest['reused']} reused, {manifest['duplicates']} duplicates), "
        f"skipped {sum(skipped.values())} ({skip_text}) "
        f"in {manifest['build_seconds']:.1f} s with {manifest['backbone']} "
        f"{manifest['variant']}"
        + (" (RANDOM WEIGHTS)" if manifest.get("random_weights") else "")
        + f"; {manifest['whitening_note']}"
        + (
            "; augmented with {k} neighbours".format(**manifest["augmentation"])
            if manifest.get("augmentation")
            else ""
        )
        + (
            "; queries expanded with {answers} answers".format(
                **manifest["query_expansion"]
            )
            if manifest.get("query_expansion")
            else ""
        )
    )


class _build_lock:
    """One build per index at a time: a second one fails at once."""

    def __init__(self, out: Path):
        self.path = out.parent / f".{out.name}.build-lock"

    def __enter__(self):
        self.file = open(self.path, "w")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            self.file.close()
            raise BuildError(f"another build of {self.path.parent} is running") from e
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.file, fcntl.LOCK_UN)
        self.file.close()
