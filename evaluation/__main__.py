"""python -m evaluation INDEX [--out reports/NAME] [--catalogue DIR]

Leave-one-out retrieval quality of a built index against its catalogue labels,
written as report.json and a self-contained report.html.
"""

import argparse
import logging
import sys
import time
from pathlib import Path

from index_builder.store import IndexReadError, read_index

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
    result = evaluate(stored.vectors(), stored.items, collapse=args.collapse)
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


def _manifest_facts(manifest: dict) -> dict:
    keys = (
        "backbone",
        "weights_source",
        "model_card_sha256",
        "variant",
        "recipe",
        "whitening",
        "item_count",
        "source",
        "built_at",
    )
    return {k: manifest[k] for k in keys if k in manifest}


if __name__ == "__main__":
    sys.exit(main())
