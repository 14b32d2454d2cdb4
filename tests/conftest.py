import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# The search service's fixtures: built_index, app, client, ...
pytest_plugins = ["service_fixtures"]


@pytest.fixture(scope="session")
def random_model_dir(tmp_path_factory):
    """A MobileNetV2 exported with seeded random weights: small and quick to run."""
    import torch

    from export.onnx_export import export
    from export.weights import resolve

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("models")
    export(resolve("mobilenet_v2", None, random=True), out)
    return out


@pytest.fixture(scope="session")
def random_model(random_model_dir):
    return random_model_dir / "mobilenet_v2.onnx"
