"""An int8 variant of an exported model: onnxruntime static quantisation,
calibrated on catalogue images prepared exactly as the index prepares them.

python -m export.quantize models/<backbone>.onnx [--calibration FOLDER]
writes models/<backbone>-int8.onnx and its model card.
"""

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)

from embedding.card import (
    ModelCard,
    ModelCardError,
    card_path,
    model_path_for,
    read_card,
    sha256_of,
    write_atomically,
)
from embedding.preprocess import ImageError, Recipe, open_image, prepare

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
FORMATS = {"qdq": QuantFormat.QDQ, "qoperator": QuantFormat.QOperator}
METHODS = {
    "minmax": CalibrationMethod.MinMax,
    "percentile": CalibrationMethod.Percentile,
    "entropy": CalibrationMethod.Entropy,
}
DEFAULT_COUNT = 300


class QuantizeError(Exception):
    pass


def strip_identities(model: onnx.ModelProto) -> int:
    """Remove Identity nodes; returns how many were removed.

    The TorchScript exporter shares equal weight tensors between convolutions
    through Identity nodes. The quantiser cannot quantise a weight behind one, so
    each such Identity becomes an initializer of its own (a copy of the shared
    tensor); an Identity over a computed value is bypassed by rewiring.
    """
    graph = model.graph
    initializers = {t.name: t for t in graph.initializer}
    outputs = {o.name for o in graph.output}
    removed = 0
    for node in [n for n in graph.node if n.op_type == "Identity"]:
        source, target = node.input[0], node.output[0]
        if source in initializers:
            copy = numpy_helper.from_array(
                numpy_helper.to_array(initializers[source]), target
            )
            graph.initializer.append(copy)
        elif target in outputs:
            continue  # renaming a graph output would change the model's interface
        else:
            for other in graph.node:
                for i, name in enumerate(other.input):
                    if name == target:
                        other.input[i] = source
        graph.node.remove(node)
        removed += 1
    return removed


def drop_unused_initializers(path: Path) -> None:
    """The quantiser leaves the constants it folded behind; onnxruntime would warn
    about each one every time it loads the model."""
    model = onnx.load(str(path))
    used = {name for node in model.graph.node for name in node.input}
    used |= {o.name for o in model.graph.output}
    unused = [t for t in model.graph.initializer if t.name not in used]
    for tensor in unused:
        model.graph.initializer.remove(tensor)
    if unused:
        onnx.save(model, str(path))


def find_images(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in Path(folder).rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
    )


def demo_images(count: int, seed: int = 0):
    """Drawn stand-ins for catalogue photos (shapes on a light background), for
    when no catalogue is at hand."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    for _ in range(count):
        img = Image.new("RGB", (60, 80), (245, 245, 245))
        draw = ImageDraw.Draw(img)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        x0, y0 = rng.integers(2, 20, 2)
        x1, y1 = 60 - rng.integers(2, 20), 80 - rng.integers(2, 25)
        shape = rng.integers(0, 3)
        if shape == 0:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
        elif shape == 1:
            draw.ellipse((x0, y0, x1, y1), fill=colour)
        else:
            draw.polygon([(30, y0), (x0, y1), (x1, y1)], fill=colour)
        for _ in range(rng.integers(0, 4)):
            stripe = int(rng.integers(y0, y1 + 1))
            draw.line((x0, stripe, x1, stripe), fill=(255 - colour[0], 40, 90))
        yield img


def calibration_batch(
    card: ModelCard, recipe: Recipe, folder: Path | None, count: int
) -> np.ndarray:
    """``count`` images as NCHW float32, prepared with the index's recipe. From a
    folder, images are taken evenly spread over the sorted list of files."""
    if folder is None:
        images = list(demo_images(count))
    else:
        paths = find_images(folder)
        if not paths:
            raise QuantizeError(f"no images (jpg, png, webp) found under {folder}")
        step = max(1, len(paths) // count)
        images = []
        for path in paths[::step]:
            try:
                images.append(open_image(path))
            except ImageError as e:
                log.warning("calibration: skipping %s: %s", path, e)
            if len(images) == count:
                break
    batch = [prepare(img, recipe, card.mean, card.std) for img in images]
    return np.stack(batch).astype(np.float32)


class BatchReader(CalibrationDataReader):
    """Feeds prepared images to the calibrator a few at a time, in batches of one
    size (the histogram calibrators stack them)."""

    def __init__(self, images: np.ndarray, input_name: str, batch_size: int = 16):
        batch_size = max(d for d in range(1, batch_size + 1) if len(images) % d == 0)
        self.batches = [
            {input_name: images[i : i + batch_size]}
            for i in range(0, len(images), batch_size)
        ]
        self.position = 0

    def get_next(self):
        if self.position == len(self.batches):
            return None
        self.position += 1
        return self.batches[self.position - 1]

    def rewind(self):
        self.position = 0


def quantize_model(
    model_path: Path,
    images: np.ndarray,
    out_path: Path,
    fmt: str = "qdq",
    method: str = "minmax",
    symmetric_activations: bool = False,
) -> ModelCard:
    """Quantise ``model_path`` (fp32, with a card) to int8 and write ``out_path``
    and its card. The model is written aside and renamed into place once
    complete, then its card; a failure leaves any previous int8 model as it was."""
    model_path, out_path = Path(model_path), Path(out_path)
    base = read_card(model_path)
    if base.variant != "fp32":
        raise QuantizeError(f"{model_path} is already a {base.variant} model")
    if sha256_of(model_path) != base.onnx_sha256:
        raise QuantizeError(
            f"{model_path} does not match its card's sha256: re-export the model"
        )

    model = onnx.load(str(model_path))
    removed = strip_identities(model)
    input_name = model.graph.input[0].name
    tmp = out_path.parent / f".{out_path.name}.tmp-{os.getpid()}"
    try:
        with tempfile.TemporaryDirectory() as workdir:
            stripped = Path(workdir) / "stripped.onnx"
            onnx.save(model, str(stripped))
            quantize_static(
                str(stripped),
                str(tmp),
                BatchReader(images, input_name),
                quant_format=FORMATS[fmt],
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=METHODS[method],
                extra_options={"ActivationSymmetric": symmetric_activations},
            )
        drop_unused_initializers(tmp)
        card = ModelCard(
            **{
                **base.__dict__,
                "onnx_file": out_path.name,
                "onnx_sha256": sha256_of(tmp),
                "variant": "int8",
                "base_onnx_sha256": base.onnx_sha256,
                "versions": {**base.versions, **_quantizer_versions()},
            }
        )
        os.replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)
    write_atomically(card_path(out_path), card.to_json().encode())
    log.info(
        "quantised %s to %s (%s, %s calibration on %d images, %d Identity removed)",
        model_path.name,
        out_path,
        fmt,
        method,
        len(images),
        removed,
    )
    return card


def is_current(path: Path, base: ModelCard) -> bool:
    """Whether ``path`` is an intact int8 model made from the model of ``base``."""
    try:
        card = read_card(path)
        return (
            card.base_onnx_sha256 == base.onnx_sha256
            and sha256_of(path) == card.onnx_sha256
        )
    except (ModelCardError, OSError):
        return False


def _quantizer_versions() -> dict:
    import onnxruntime

    return {"onnxruntime": onnxruntime.__version__}


def parse_size(text: str) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH, not {text!r}") from e
    return height, width


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m export.quantize", description=__doc__
    )
    parser.add_argument("model", type=Path, help="the fp32 .onnx (card beside it)")
    parser.add_argument(
        "--calibration",
        type=Path,
        help="catalogue folder (images/ or any nested images); "
        "default: generated demo images",
    )
    parser.add_argument("--count", type=int, default=DEFAULT_COUNT)
    parser.add_argument(
        "--size",
        type=parse_size,
        help="calibration input HEIGHTxWIDTH; default: the card's input size",
    )
    parser.add_argument("--resize", choices=["pad", "squash"], default="pad")
    parser.add_argument("--format", choices=sorted(FORMATS), default="qdq")
    parser.add_argument("--method", choices=sorted(METHODS), default="minmax")
    parser.add_argument("--out", type=Path, help="default: <backbone>-int8.onnx")
    parser.add_argument(
        "--if-stale",
        action="store_true",
        help="do nothing when the int8 model was already made from this fp32 model",
    )
    return parser.parse_args(argv)


def main(argv=None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    # The quantiser advises its own pre-processing on every call; measured here,
    # it changes nothing for these networks.
    logging.getLogger().handlers[0].addFilter(
        lambda record: not record.getMessage().startswith("Please consider")
    )
    args = parse_args(argv)
    started = time.perf_counter()
    try:
        base = read_card(args.model)
        out = args.out or model_path_for(args.model.parent, base.backbone, "int8")
        if args.if_stale and is_current(out, base):
            print(f"{out} is up to date with {args.model}")
            return 0
        height, width = args.size or base.input_size
        recipe = Recipe(height=height, width=width, resize=args.resize)
        images = calibration_batch(base, recipe, args.calibration, args.count)
        card = quantize_model(args.model, images, out, args.format, args.method)
    except (QuantizeError, ModelCardError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(
        f"{out} ({card.backbone}, int8, {len(images)} calibration images, "
        f"{time.perf_counter() - started:.0f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
