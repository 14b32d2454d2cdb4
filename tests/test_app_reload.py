"""Workers swap in a new index behind the link, and refuse one they cannot use."""

import json
import logging

import numpy as np
import pytest
from service_fixtures import make_config
from service_helpers import build_index, make_catalogue

from app import create_app


@pytest.fixture
def live(tmp_path, catalogue_dir, random_model, random_model_dir):
    """A service over its own index link, checking for new builds on every request."""
    link = build_index(catalogue_dir, random_model, tmp_path / "indexes" / "shop")
    app = create_app(make_config(link, random_model_dir))
    return link, app.test_client()


def ready(client) -> dict:
    response = client.get("/readyz")
    assert response.status_code == 200
    return response.get_json()


def test_a_new_build_behind_the_link_is_served_without_restart(
    live, tmp_path, random_model
):
    link, client = live
    assert ready(client)["index"]["item_count"] == 42

    smaller = make_catalogue(tmp_path / "smaller", count=12, seed=5)
    build_index(smaller, random_model, link)

    body = ready(client)
    assert body["index"]["item_count"] == 12
    assert body["index"]["build"] == link.resolve().name
    assert body["problem"] is None
    similar = client.get("/api/v1/items/10001/similar?k=50").get_json()
    assert len(similar["results"]) <= 11


def test_an_index_from_another_model_is_refused_and_the_old_one_serves(
    live, catalogue_dir, random_model, caplog
):
    link, client = live
    before = ready(client)["index"]["build"]
    other = {
        "model_card_sha256": "f" * 64,
        "backbone": "resnet50",
        "embedding_dim": 2048,
        "model_dim": 2048,
    }
    vectors = np.random.default_rng(0).standard_normal((42, 2048)).astype("float32")

    with caplog.at_level(logging.ERROR):
        build_index(
            catalogue_dir, random_model, link, manifest_extra=other, vectors=vectors
        )
        body = ready(client)

    assert body["index"]["build"] == before
    assert body["problem"].startswith(
        "refused the new index: it was built with model (resnet50, 2048-d, card "
        "ffffffffffff) but this service runs (mobilenet_v2, 1280-d"
    )
    assert "restart the service to switch models" in body["problem"]
    assert any("refused the new index" in r.getMessage() for r in caplog.records)
    response = client.get("/api/v1/items/10001/similar")
    assert response.status_code == 200


def truncate_index_file(folder):
    path = folder / "index.faiss"
    path.write_bytes(path.read_bytes()[:1000])


def cut_the_last_vector_short(folder):
    path = folder / "index.faiss"
    path.write_bytes(path.read_bytes()[:-64])


def corrupt_items(folder):
    (folder / "items.json").write_text('{"id": [')


@pytest.mark.parametrize(
    "damage", [truncate_index_file, cut_the_last_vector_short, corrupt_items]
)
def test_a_corrupt_new_index_is_refused_and_the_old_one_serves(
    live, catalogue_dir, random_model, damage
):
    link, client = live
    before = ready(client)["index"]["build"]

    build_index(catalogue_dir, random_model, link, damage=damage)

    body = ready(client)
    assert body["index"]["build"] == before
    assert body["problem"].startswith(f"index at {link.resolve()} cannot be read")
    assert client.get("/api/v1/items/10001/similar").status_code == 200


def test_an_index_whose_model_differs_from_the_file_on_disk_is_not_ready(
    tmp_path, catalogue_dir, random_model, random_model_dir
):
    link = build_index(
        catalogue_dir,
        random_model,
        tmp_path / "shop",
        manifest_extra={"model_card_sha256": "0" * 64},
    )
    client = create_app(make_config(link, random_model_dir)).test_client()

    response = client.get("/readyz")
    message = response.get_json()["error"]["message"]
    assert response.status_code == 503
    assert message.startswith(
        "the index was built with model (mobilenet_v2, 1280-d, card 000000000000) "
        f"but {random_model} is (mobilenet_v2, 1280-d, card "
    )
    assert message.endswith("rebuild the index with 'make index' or restore that model")


def test_a_missing_model_file_is_not_ready_and_says_how_to_fix_it(
    tmp_path, built_index
):
    client = create_app(make_config(built_index, tmp_path)).test_client()

    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["error"] == {
        "code": "not_ready",
        "message": f"model file {tmp_path / 'mobilenet_v2.onnx'} named by the index "
        "is missing: export it with 'make model' or set FVS_MODELS_DIR",
    }


def test_the_recipe_comes_from_the_manifest(built_index, random_model_dir, app):
    manifest = json.loads((built_index / "manifest.json").read_text())
    embedder = app.extensions["engine"].embedder
    assert manifest["recipe"] == {
        "height": 96,
        "width": 72,
        "resize": "pad",
        "flip": False,
    }
    assert embedder.recipe.to_dict() == manifest["recipe"]
