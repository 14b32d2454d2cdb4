"""Export a backbone to ONNX, check it against torch, then put it in place."""

import logging
import os
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from embedding.card import ModelCard, card_path, sha256_of, write_atomically

from .networks import build
from .weights import Weights, load_strict

log = logging.getLogger(__name__)

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
DEFAULT_INPUT_SIZE = [224, 224]
OPSET = 17
TOLERANCE = 1e-4


class ExportCheckError(Exception):
    """The exported ONNX model does not compute what the torch model does."""


def build_model(weights: Weights) -> torch.nn.Module:
    model = build(weights.backbone)
    if weights.state_dict is not None:
        load_strict(model, weights.state_dict, weights.location)
    return model.eval()


def export_onnx(model: torch.nn.Module, path: Path, opset: int = OPSET) -> None:
    dummy = torch.zeros(1, 3, *DEFAULT_INPUT_SIZE)
    # The TorchScript exporter is deprecated but needs no extra packages and gives
    # a plain graph of Conv/Relu/Add nodes for these networks; silence its notice.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model,
            (dummy,),
            str(path),
            input_names=["pixels"],
            output_names=["embedding"],
            dynamic_axes={
                "pixels": {0: "batch", 2: "height", 3: "width"},
                "embedding": {0: "batch"},
            },
            opset_version=opset,
            dynamo=False,
        )


def check_against_torch(model: torch.nn.Module, path: Path, shapes=None) -> float:
    """Largest absolute difference between torch and onnxruntime over test inputs."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    worst = 0.0
    for shape in shapes or [(1, 3, 224, 224), (3, 3, 224, 168)]:
        x = rng.standard_normal(shape).astype(np.float32)
        with torch.no_grad():
            expected = model(torch.from_numpy(x)).numpy()
        got = session.run(["embedding"], {"pixels": x})[0]
        if got.shape != expected.shape:
            raise ExportCheckError(
                f"{path}: output shape {got.shape} != {expected.shape}"
            )
        worst = max(worst, float(np.abs(got - expected).max()))
    if worst > TOLERANCE:
        raise ExportCheckError(
            f"{path}: onnxruntime differs from torch by {worst:.2e} (> {TOLERANCE})"
        )
    return worst


def export(weights: Weights, out_dir: Path) -> ModelCard:
    """Write ``<out_dir>/<backbone>.onnx`` and its model card, replacing old ones
    only after the new model has been checked."""
    import onnx

    started = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / f"{weights.backbone}.onnx"
    tmp = out_dir / f".{weights.backbone}.onnx.tmp-{os.getpid()}"
    model = build_model(weights)
    try:
        export_onnx(model, tmp)
        worst = check_against_torch(model, tmp)
        card = ModelCard(
            backbone=weights.backbone,
            weights_source=weights.source,
            weights_location=weights.location,
            weights_sha256=weights.sha256,
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            input_size=DEFAULT_INPUT_SIZE,
            embedding_dim=model.embedding_dim,
            opset=OPSET,
            onnx_file=final.name,
            onnx_sha256=sha256_of(tmp),
            versions={"torch": torch.__version__, "onnx": onnx.__version__},
        )
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    write_atomically(card_path(final), card.to_json().encode())
    log.info(
        "exported %s (%s weights) to %s in %.1f s; max |onnx - torch| = %.1e",
        weights.backbone,
        weights.source,
        final,
        time.perf_counter() - started,
        worst,
    )
    return card
