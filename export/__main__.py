"""python -m export: write models/<backbone>.onnx and its model card."""

import argparse
import logging
import sys
from pathlib import Path

from .networks import BACKBONES
from .onnx_export import ExportCheckError, export
from .weights import WeightsError, resolve


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m export", description=__doc__)
    parser.add_argument(
        "--backbone",
        choices=sorted(BACKBONES),
        help="default: resnet50 "
        "when its weights are reachable, else the packaged mobilenet_v2",
    )
    parser.add_argument("--weights", type=Path, help="a torchvision state dict file")
    parser.add_argument(
        "--out", type=Path, default=Path("models"), help="output folder"
    )
    parser.add_argument(
        "--random-weights",
        action="store_true",
        help="random initialisation, for tests only; the card says so",
    )
    return parser.parse_args(argv)


def main(argv=None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    args = parse_args(argv)
    if args.random_weights and args.weights:
        print(
            "error: --random-weights and --weights exclude each other", file=sys.stderr
        )
        return 2
    try:
        weights = resolve(args.backbone, args.weights, args.random_weights)
        card = export(weights, args.out)
    except (WeightsError, ExportCheckError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if card.random_weights:
        logging.warning(
            "RANDOM WEIGHTS: this model is for tests only; its results mean nothing"
        )
    print(
        f"{args.out / card.onnx_file} ({card.backbone}, {card.embedding_dim}-d, "
        f"weights: {card.weights_source})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
