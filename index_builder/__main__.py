"""python -m index_builder CATALOGUE: embed a catalogue into indexes/<name>."""

import argparse
import logging
import sys
from pathlib import Path

from embedding.card import (
    VARIANT_VARIABLE,
    ModelCardError,
    chosen_variant,
    model_path_for,
    read_card,
)

from .build import DEFAULT_BATCH_SIZE, DEFAULT_WHITEN_DIM, BuildError, build_index
from .catalogue import CatalogueError

log = logging.getLogger("index_builder")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m index_builder", description=__doc__
    )
    parser.add_argument(
        "catalogue",
        type=Path,
        help="a folder with images/<id>.jpg and styles.csv, or any folder of images",
    )
    parser.add_argument(
        "--out", type=Path, help="index link (default: indexes/<catalogue name>)"
    )
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument(
        "--full",
        action="store_true",
        help="embed every image again instead of reusing unchanged ones",
    )
    parser.add_argument(
        "--model",
        type=Path,
        help=f"the .onnx model (default: the {VARIANT_VARIABLE} variant, fp32 when "
        "unset, of the backbone in models/)",
    )
    parser.add_argument(
        "--whiten-dim",
        type=int,
        default=DEFAULT_WHITEN_DIM,
        help="PCA-whiten the stored vectors to N dimensions, fitted on the "
        "catalogue (fewer when it is too small) (default: %(default)s)",
    )
    parser.add_argument(
        "--no-whiten",
        action="store_true",
        help="store the model's vectors as they are",
    )
    parser.add_argument(
        "--no-augment",
        action="store_true",
        help="store the whitened vectors without averaging in their catalogue "
        "neighbours (database-side augmentation)",
    )
    parser.add_argument(
        "--no-expand",
        action="store_true",
        help="no query expansion: the service searches once with the query",
    )
    parser.add_argument(
        "--threads", type=int, help="onnxruntime threads (default: all cores)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def default_model(models: Path = Path("models"), environ=None) -> Path | None:
    """The chosen variant (``MODEL_VARIANT``, fp32 when unset) of the backbone of
    the fp32 model in ``models/`` (the first one by name when there are several).

    Raises:
        ModelCardError: ``MODEL_VARIANT`` names no variant.
    """
    variant = chosen_variant() if environ is None else chosen_variant(environ)
    for path in sorted(models.glob("*.onnx")):
        try:
            card = read_card(path)
        except ModelCardError:
            continue
        if card.variant == "fp32":
            return model_path_for(models, card.backbone, variant)
    return None


def main(argv=None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    args = parse_args(argv)
    if not args.catalogue.is_dir():
        print(
            f"error: catalogue folder {args.catalogue} not found. Give a folder with "
            "images/<id>.jpg and styles.csv, or any folder of images.",
            file=sys.stderr,
        )
        return 2
    if args.batch_size < 1:
        print("error: --batch-size must be at least 1", file=sys.stderr)
        return 2
    if args.whiten_dim < 1:
        print("error: --whiten-dim must be at least 1", file=sys.stderr)
        return 2
    try:
        model = args.model or default_model()
    except ModelCardError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if model is None or not model.is_file():
        print(
            f"error: no model at {model or 'models/*.onnx'}: run 'make model' first "
            f"(with {VARIANT_VARIABLE}=int8 set, 'make model VARIANT=int8')",
            file=sys.stderr,
        )
        return 2
    out = args.out or Path("indexes") / args.catalogue.resolve().name

    try:
        build_index(
            args.catalogue,
            model,
            out,
            batch_size=args.batch_size,
            full=args.full,
            threads=args.threads,
            progress=not args.no_progress,
            whiten_dim=0 if args.no_whiten else args.whiten_dim,
            augmentation=not args.no_augment,
            query_expansion=not args.no_expand,
        )
    except (CatalogueError, ModelCardError, BuildError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"interrupted: {out} is unchanged", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
