"""The model card: a JSON file beside each ONNX model describing how to feed it."""

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

CARD_VERSION = 1


@dataclass
class ModelCard:
    backbone: str
    weights_source: str  # file, torch.hub, package or random
    weights_location: str
    weights_sha256: str
    mean: list[float]
    std: list[float]
    input_size: list[int]  # default [height, width]
    embedding_dim: int
    opset: int
    onnx_file: str  # file name, beside the card
    onnx_sha256: str
    variant: str = "fp32"
    versions: dict = field(default_factory=dict)
    card_version: int = CARD_VERSION
    # A derived variant (int8) names the fp32 model it was made from.
    base_onnx_sha256: str = ""

    @property
    def random_weights(self) -> bool:
        return self.weights_source == "random"

    def to_json(self) -> str:
        data = asdict(self)
        if not data["base_onnx_sha256"]:
            # fp32 cards keep the same text, hence the same identity, as before.
            del data["base_onnx_sha256"]
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    def sha256(self) -> str:
        """Identity of the model: changes whenever the ONNX file or its feeding does."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()


class ModelCardError(Exception):
    pass


VARIANTS = ("fp32", "int8")
VARIANT_VARIABLE = "MODEL_VARIANT"


def chosen_variant(environ=os.environ) -> str:
    """The model variant the index builder and the service use: MODEL_VARIANT,
    fp32 when unset."""
    variant = environ.get(VARIANT_VARIABLE, "").strip() or "fp32"
    if variant not in VARIANTS:
        raise ModelCardError(
            f"{VARIANT_VARIABLE}={variant!r} is not a model variant: "
            f"choose one of {', '.join(VARIANTS)}"
        )
    return variant


def model_path_for(models_dir: Path, backbone: str, variant: str = "fp32") -> Path:
    """Where a backbone's model of a given variant lives: ``<backbone>.onnx`` for
    fp32, ``<backbone>-<variant>.onnx`` otherwise."""
    if variant not in VARIANTS:
        raise ModelCardError(
            f"unknown model variant {variant!r}: choose one of {', '.join(VARIANTS)}"
        )
    suffix = "" if variant == "fp32" else f"-{variant}"
    return Path(models_dir) / f"{backbone}{suffix}.onnx"


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def card_path(model_path: Path) -> Path:
    return Path(model_path).with_suffix(".json")


def read_card(path: Path) -> ModelCard:
    path = Path(path)
    if path.suffix == ".onnx":
        path = card_path(path)
    try:
        data = json.loads(path.read_text())
        return ModelCard(**data)
    except FileNotFoundError as e:
        raise ModelCardError(
            f"model card {path} not found: run 'make model' to export the model"
        ) from e
    except (ValueError, TypeError) as e:
        raise ModelCardError(f"model card {path} is not valid: {e}") from e


def write_atomically(path: Path, data: bytes) -> None:
    tmp = Path(f"{path}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
