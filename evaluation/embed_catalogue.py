"""python -m evaluation.embed_catalogue CATALOGUE --out indexes/NAME

A plain, unbatched-pipeline index of a labelled catalogue with the default
recipe, so the evaluation can run where the index builder is not available.
It writes the same layout as the builder (``index_builder.store``).
"""

import argparse
import logging
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from embedding.model import Embedder
from index_builder.store import build_dir_for, publish, write_build

from .catalogue import read_catalogue

BATCH = 64
log = logging.getLogger("evaluation.embed_catalogue")


def embed_catalogue(catalogue: Path, model: Path, link: Path) -> Path:
    started = time.perf_counter()
    embedder = Embedder(model)
    items = read_catalogue(catalogue)
    paths = [catalogue / p for p in items["path"]]
    vectors = []
    for start in range(0, len(paths), BATCH):
        batch = np.stack([embedder.load(p) for p in paths[start : start + BATCH]])
        vectors.append(embedder.embed(batch))
    folder = build_dir_for(link)
    manifest = {
        "backbone": embedder.card.backbone,
        "weights_source": embedder.card.weights_source,
        "model_card_sha256": embedder.card.sha256(),
        "model_file": model.name,
        "variant": embedder.card.variant,
        "recipe": embedder.recipe.to_dict(),
        "source": str(catalogue.resolve()),
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "build_seconds": round(time.perf_counter() - started, 1),
        "skipped": {},
        "duplicates": sum(1 for d in items["dup_of"] if d),
    }
    write_build(folder, np.concatenate(vectors), items, manifest)
    publish(folder, link)
    log.info(
        "embedded %d images in %.0f s into %s",
        len(paths),
        time.perf_counter() - started,
        link,
    )
    return folder


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evaluation.embed_catalogue")
    parser.add_argument("catalogue", type=Path)
    parser.add_argument("--model", type=Path, default=Path("models/mobilenet_v2.onnx"))
    parser.add_argument("--out", type=Path, default=Path("indexes/fashion-dev"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    embed_catalogue(args.catalogue, args.model, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
