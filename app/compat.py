"""Which model an index needs, and whether the one on disk is it.

Standard library only: gunicorn's master process uses this to refuse to start
on a broken set-up before it forks any worker, without loading FAISS or
onnxruntime."""

import json
from pathlib import Path

from embedding.card import ModelCard, ModelCardError, read_card

MANIFEST_FILE = "manifest.json"
DEMO_MARKER = "demo.json"  # written by `python -m demo` into its catalogue


class SetupError(Exception):
    """The index or its model cannot be used; the message says what to do."""


def read_manifest(index: Path) -> dict:
    folder = Path(index).resolve()
    try:
        return json.loads((folder / MANIFEST_FILE).read_text())
    except FileNotFoundError as e:
        raise SetupError(
            f"no index at {index}: build one with 'make index' (or 'make run')"
        ) from e
    except ValueError as e:
        raise SetupError(f"{folder / MANIFEST_FILE} is not valid JSON: {e}") from e


def describe(card_sha: str, backbone, dim) -> str:
    return f"{backbone}, {dim}-d, card {str(card_sha)[:12]}"


def model_dim(manifest: dict):
    """The dimension of the model's own vectors: ``model_dim``, or for an index
    stored without whitening (before it was recorded) ``embedding_dim``."""
    return manifest.get("model_dim", manifest.get("embedding_dim"))


def model_path_for(manifest: dict, models_dir: Path) -> Path:
    name = manifest.get("model_file")
    if not name or Path(name).name != name:
        raise SetupError(f"the index manifest names no usable model file: {name!r}")
    return Path(models_dir) / name


def check_model(manifest: dict, models_dir: Path) -> tuple[Path, ModelCard]:
    """The model file the index was built with, checked against its card."""
    path = model_path_for(manifest, models_dir)
    if not path.exists():
        raise SetupError(
            f"model file {path} named by the index is missing: export it with "
            "'make model' or set FVS_MODELS_DIR"
        )
    try:
        card = read_card(path)
    except ModelCardError as e:
        raise SetupError(str(e)) from e

    wanted = describe(
        manifest.get("model_card_sha256"),
        manifest.get("backbone"),
        model_dim(manifest),
    )
    found = describe(card.sha256(), card.backbone, card.embedding_dim)
    if (
        card.sha256() != manifest.get("model_card_sha256")
        or card.backbone != manifest.get("backbone")
        or card.embedding_dim != model_dim(manifest)
    ):
        raise SetupError(
            f"the index was built with model ({wanted}) but {path} is ({found}): "
            "rebuild the index with 'make index' or restore that model"
        )
    return path, card


def check_same_model(manifest: dict, card: ModelCard) -> None:
    """A new index must come from the model this worker already runs."""
    if manifest.get("model_card_sha256") == card.sha256():
        return
    wanted = describe(
        manifest.get("model_card_sha256"),
        manifest.get("backbone"),
        model_dim(manifest),
    )
    running = describe(card.sha256(), card.backbone, card.embedding_dim)
    raise SetupError(
        f"refused the new index: it was built with model ({wanted}) but this "
        f"service runs ({running}); restart the service to switch models"
    )


def is_demo(manifest: dict) -> bool:
    """Whether the index was built from the generated demo catalogue."""
    if manifest.get("demo"):
        return True
    source = manifest.get("source")
    return bool(source) and (Path(source) / DEMO_MARKER).is_file()
