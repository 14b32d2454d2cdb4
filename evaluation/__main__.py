"""python -m evaluation INDEX [--out reports/NAME] [--catalogue DIR]

Leave-one-out retrieval quality of a built index against its catalogue labels,
written as report.json and a self-contained report.html.
"""

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np

from index_builder.store import IndexReadError, StoredIndex, read_index

from . import metrics
from .augmented import AugmentedSearch
from .evaluate import evaluate
from .report import write_report

log = logging.getLogger("evaluation")


def image_finder(items: dict, manifest: dict, catalogue: Path | None):
    """row -> the item's image file, looked for in the catalogue folder given,
    then in the folder the index was built from."""
    roots = [Path(r) for r in (catalogue, manifest.get("source")) if r]

    def find(row: int) -> Path | None:
        path = Path(items["path"][row]) if "path" in items else None
        names = [path] if path else []
        names.append(Path("images") / f"{items['id'][row]}.jpg")
        for name in names:
            if name.is_absolute() and name.is_file():
                return name
            for root in roots:
                if (root / name).is_file():
                    return root / name
        return None

    return find


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evaluation", description=__doc__)
    parser.add_argument("index", type=Path, help="a built index folder or its link")
    parser.add_argument("--out", type=Path, help="report folder (reports/<index name>)")
    parser.add_argument(
        "--catalogue", type=Path, help="catalogue folder, for the thumbnails"
    )
    parser.add_argument(
        "--collapse", action="store_true", help="collapse byte-identical answers"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    try:
        stored = read_index(args.index)
    except IndexReadError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if "articleType" not in stored.items:
        print(
            f"error: {args.index} has no articleType labels (built without a "
            "styles.csv?); nothing to evaluate against",
            file=sys.stderr,
        )
        return 2

    started = time.perf_counter()
    try:
        vectors, search = searched_as_served(stored)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    result = evaluate(vectors, stored.items, collapse=args.collapse, search=search)
    name = args.index.name if args.index.name not in ("", ".") else stored.path.name
    info = {"name": name, "path": str(stored.path), **_manifest_facts(stored.manifest)}
    out = args.out or Path("reports") / name
    find = image_finder(stored.items, stored.manifest, args.catalogue)
    write_report(result, info, out, find)

    at = result["overall"]["articleType"]
    log.info(
        "evaluated %d queries in %.1f s: articleType P@1 %.4f P@5 %.4f P@10 %.4f "
        "mAP@10 %.4f; report in %s",
        result["queries"],
        time.perf_counter() - started,
        at["p@1"],
        at["p@5"],
        at["p@10"],
        at["map@10"],
        out / "report.html",
    )
    return 0


def searched_as_served(stored: StoredIndex):
    """The vectors to evaluate and the search to score them with, as the service
    searches this index: the stored vectors and a plain search, or, for an index
    augmented with its neighbours or searched with query expansion, the whitened
    vectors before augmentation (from ``raw.npy`` and the stored whitening) and
    a leave-one-out search that augments the catalogue without each query."""
    augmentation = stored.manifest.get("augmentation")
    expansion = stored.manifest.get("query_expansion")
    if not augmentation and not expansion:
        return stored.vectors(), None
    raw = stored.raw_vectors()
    if stored.whitening is None or raw is None:
        raise ValueError(
            f"{stored.path} is augmented but has no whitening and raw.npy to "
            "recompute its vectors from"
        )
    whitened = stored.whitening.apply(np.asarray(raw))
    groups = metrics.group_ids(stored.items["sha256"])
    search = AugmentedSearch(
        whitened,
        k=augmentation["k"] if augmentation else 0,
        alpha=augmentation["alpha"] if augmentation else 1.0,
        groups=groups,
        expand=expansion["answers"] if expansion else 0,
        expand_alpha=expansion["alpha"] if expansion else 3.0,
    )
    if not np.allclose(search.augmented, stored.vectors(), atol=1e-5):
        raise ValueError(
            f"{stored.path}: its stored vectors are not its raw vectors whitened "
            "and augmented as its manifest says"
        )
    return whitened, search


def _manifest_facts(manifest: dict) -> dict:
    keys = (
        "backbone",
        "weights_source",
        "model_card_sha256",
        "variant",
        "recipe",
        "whitening",
        "augmentation",
        "query_expansion",
        "item_count",
        "source",
        "built_at",
    )
    return {k: manifest[k] for k in keys if k in manifest}


if __name__ == "__main__":
    sys.exit(main())
