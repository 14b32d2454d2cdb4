import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from embedding.card import (
    ModelCardError,
    card_path,
    chosen_variant,
    model_path_for,
    read_card,
    sha256_of,
)
from embedding.model import Embedder
from embedding.preprocess import Recipe, load
from export.quantize import (
    QuantizeError,
    calibration_batch,
    main,
    quantize_model,
    strip_identities,
)

CALIBRATION_COUNT = 12


@pytest.fixture(scope="module")
def quantised(random_model, tmp_path_factory):
    """The random MobileNetV2, quantised with generated calibration images."""
    card = read_card(random_model)
    images = calibration_batch(card, Recipe(224, 224), None, CALIBRATION_COUNT)
    out = tmp_path_factory.mktemp("int8") / "mobilenet_v2-int8.onnx"
    quantize_model(random_model, images, out)
    return out, images


def shared_weight_graph() -> onnx.ModelProto:
    """Two convolutions sharing one weight through an Identity, as the TorchScript
    exporter writes them, plus an Identity over a computed value."""
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(
        rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w"
    )
    nodes = [
        helper.make_node("Identity", ["w"], ["w_copy"], name="share"),
        helper.make_node("Conv", ["x", "w"], ["a"], pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["x", "w_copy"], ["b"], pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["a", "b"], ["s"]),
        helper.make_node("Identity", ["s"], ["t"], name="pass"),
        helper.make_node("Relu", ["t"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
        [weight],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(
        model.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    return session.run(None, {"x": x})[0]


def test_strip_identities_removes_them_and_keeps_the_result():
    model = shared_weight_graph()
    x = np.random.default_rng(1).standard_normal((1, 3, 8, 8)).astype(np.float32)
    expected = run(model, x)

    removed = strip_identities(model)

    onnx.checker.check_model(model)
    assert removed == 2
    assert [n.op_type for n in model.graph.node] == ["Conv", "Conv", "Add", "Relu"]
    # Each convolution now has a weight initializer of its own.
    assert sorted(t.name for t in model.graph.initializer) == ["w", "w_copy"]
    np.testing.assert_allclose(run(model, x), expected, rtol=1e-6, atol=1e-5)


def test_quantised_model_has_int8_ops_and_no_identity(quantised):
    path, _ = quantised
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert "Identity" not in ops
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    # Every convolution's weight is stored as int8.
    model = onnx.load(str(path))
    int8 = {t.name for t in model.graph.initializer if t.data_type == TensorProto.INT8}
    conv_weights = [
        producer.input[0]
        for conv in model.graph.node
        if conv.op_type == "Conv"
        for producer in model.graph.node
        if producer.output[0] == conv.input[1]
    ]
    assert len(conv_weights) == 52
    assert set(conv_weights) <= int8


def io_signature(path):
    model = onnx.load(str(path))

    def dims(value):
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

    return (
        [(v.name, dims(v)) for v in model.graph.input],
        [(v.name, dims(v)) for v in model.graph.output],
    )


def test_quantised_model_keeps_input_and_output_names_and_dims(quantised, random_model):
    path, _ = quantised
    inputs, outputs = io_signature(path)
    assert inputs == io_signature(random_model)[0]
    assert inputs == [("pixels", ["batch", 3, "height", "width"])]
    # The quantiser's shape inference names the embedding width where the
    # exporter left a symbol; the name and the dynamic batch stay.
    assert outputs == [("embedding", ["batch", 1280])]
    assert [name for name, _ in io_signature(random_model)[1]] == ["embedding"]


def test_quantised_card_records_variant_and_links_the_base_model(
    quantised, random_model
):
    path, _ = quantised
    base, card = read_card(random_model), read_card(path)
    assert card.variant == "int8"
    assert card.onnx_file == "mobilenet_v2-int8.onnx"
    assert card.onnx_sha256 == sha256_of(path)
    assert card.base_onnx_sha256 == base.onnx_sha256 == sha256_of(random_model)
    for field in ("backbone", "embedding_dim", "mean", "std", "input_size"):
        assert getattr(card, field) == getattr(base, field), field
    assert card.sha256() != base.sha256()
    assert "onnxruntime" in card.versions


def test_quantised_embeddings_are_unit_vectors_close_to_fp32(quantised, random_model):
    path, images = quantised
    fp32 = Embedder(random_model, threads=1).embed(images)
    int8 = Embedder(path, threads=1).embed(images)

    assert int8.shape == (CALIBRATION_COUNT, 1280)
    np.testing.assert_allclose(np.linalg.norm(int8, axis=1), 1.0, atol=1e-5)
    # Random-weight embeddings of different images are alike already (cosine
    # ~0.95 on average), so the bar is set above that: measured 0.998 and more.
    assert np.sum(int8 * fp32, axis=1).min() > 0.99
    # Similarities between images, what retrieval ranks by, stay within 0.02
    # (measured 0.007; they range over 0.19 between these images).
    assert np.abs(int8 @ int8.T - fp32 @ fp32.T).max() < 0.02
    # Each image's int8 embedding is nearest to its own fp32 one once the shared
    # mean direction is removed.
    centre = fp32.mean(axis=0)
    a, b = unit(fp32 - centre), unit(int8 - centre)
    assert (b @ a.T).argmax(axis=1).tolist() == list(range(CALIBRATION_COUNT))


def unit(vectors):
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_calibration_images_are_prepared_like_the_index(random_model, tmp_path):
    card = read_card(random_model)
    recipe = Recipe(224, 168, resize="pad")
    rng = np.random.default_rng(3)
    folder = tmp_path / "catalogue" / "images"
    folder.mkdir(parents=True)
    for i in range(4):
        pixels = rng.integers(0, 256, (80, 60, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i}.png")
    (folder / "notes.txt").write_text("not an image")

    batch = calibration_batch(card, recipe, tmp_path / "catalogue", 3)

    expected = [
        load(folder / f"{i}.png", recipe, card.mean, card.std) for i in range(3)
    ]
    np.testing.assert_array_equal(batch, np.stack(expected))


def test_quantising_an_int8_model_is_refused(quantised):
    path, images = quantised
    with pytest.raises(QuantizeError, match="already a int8 model"):
        quantize_model(path, images, path.with_name("again.onnx"))


def test_model_path_for_names_each_variant(tmp_path):
    assert model_path_for(tmp_path, "resnet50") == tmp_path / "resnet50.onnx"
    assert model_path_for(tmp_path, "resnet50", "int8") == (
        tmp_path / "resnet50-int8.onnx"
    )
    with pytest.raises(ModelCardError, match="unknown model variant 'fp16'"):
        model_path_for(tmp_path, "resnet50", "fp16")


@pytest.mark.parametrize(
    ("environ", "variant"),
    [
        ({}, "fp32"),
        ({"MODEL_VARIANT": ""}, "fp32"),
        ({"MODEL_VARIANT": "int8"}, "int8"),
    ],
)
def test_model_variant_setting_defaults_to_fp32(environ, variant):
    assert chosen_variant(environ) == variant


def test_unknown_model_variant_setting_is_refused():
    with pytest.raises(ModelCardError, match="MODEL_VARIANT='int4'"):
        chosen_variant({"MODEL_VARIANT": "int4"})


def test_fp32_card_text_has_no_base_model_field(random_model):
    data = json.loads(card_path(random_model).read_text())
    assert "base_onnx_sha256" not in data
    assert data["variant"] == "fp32"


def test_cli_writes_the_int8_model_beside_the_fp32_one(random_model, tmp_path, capsys):
    import shutil

    shutil.copy(random_model, tmp_path)
    shutil.copy(card_path(random_model), tmp_path)

    assert main([str(tmp_path / "mobilenet_v2.onnx"), "--count", "4"]) == 0

    out = tmp_path / "mobilenet_v2-int8.onnx"
    assert read_card(out).variant == "int8"
    assert str(out) in capsys.readouterr().out
    made = out.stat().st_mtime_ns

    # Made from this very fp32 model already: --if-stale leaves it alone.
    assert main([str(tmp_path / "mobilenet_v2.onnx"), "--if-stale"]) == 0
    assert out.stat().st_mtime_ns == made
    assert "up to date" in capsys.readouterr().out


def test_int8_model_of_another_fp32_model_is_stale(quantised, random_model):
    from dataclasses import replace

    from export.quantize import is_current

    path, _ = quantised
    base = read_card(random_model)
    assert is_current(path, base)
    assert not is_current(path, replace(base, onnx_sha256="0" * 64))
    assert not is_current(path.with_name("missing.onnx"), base)


def test_cli_reports_a_calibration_folder_without_images(random_model, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    args = [str(random_model), "--calibration", str(empty), "--count", "4"]
    assert main([*args, "--out", str(tmp_path / "x.onnx")]) == 1
    assert not (tmp_path / "x.onnx").exists()
