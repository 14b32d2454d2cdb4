"""A second ONNX export of the same network that also outputs its feature map.

The default graph pools inside the model; trying other poolings (GeM) needs the
un-pooled map. This export is only for the variants study and never replaces the
model the builder and the service use.
"""

import warnings
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from embedding.card import read_card
from export.onnx_export import build_model
from export.weights import WeightsError, from_file, resolve


class WithFeatures(nn.Module):
    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        features = self.net.features(x)
        return F.normalize(features.mean(dim=(2, 3)), p=2.0, dim=1), features


def export_with_features(model_path: Path, out: Path) -> Path:
    """Export the model behind ``model_path``'s card with outputs ``embedding``
    and ``features`` (N, C, h, w) to ``out``; the weights must match the card."""
    card = read_card(model_path)
    try:
        weights = from_file(card.backbone, Path(card.weights_location))
    except WeightsError:
        weights = resolve(card.backbone, None, random=card.random_weights)
    if weights.sha256 != card.weights_sha256 and not card.random_weights:
        raise WeightsError(
            f"weights {weights.location} are not the ones {model_path} was made from"
        )
    net = WithFeatures(build_model(weights)).eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            net,
            (torch.zeros(1, 3, *card.input_size),),
            str(out),
            input_names=["pixels"],
            output_names=["embedding", "features"],
            dynamic_axes={
                "pixels": {0: "batch", 2: "height", 3: "width"},
                "embedding": {0: "batch"},
                "features": {0: "batch", 2: "fh", 3: "fw"},
            },
            opset_version=card.opset,
            dynamo=False,
        )
    return out
