"""A PCA-whitened index: queries go through its whitening, and a broken
whitening file makes a new build unusable."""

import numpy as np
import pytest
from PIL import Image
from service_fixtures import jpeg_bytes, make_config, upload
from service_helpers import TEST_RECIPE, build_index

from app import create_app
from embedding import whiten
from embedding.model import Embedder
from index_builder import store

WHITEN_DIM = 8  # the test catalogue has 40 distinct images


@pytest.fixture
def whitened(tmp_path, catalogue_dir, random_model, random_model_dir):
    """A service over a whitened index that checks for new builds on every request."""
    link = build_index(
        catalogue_dir, random_model, tmp_path / "shop", whiten_dim=WHITEN_DIM
    )
    app = create_app(make_config(link, random_model_dir))
    return link, app.test_client()


def mirrored(catalogue_dir, item_id: str) -> bytes:
    path = catalogue_dir / "images" / f"{item_id}.jpg"
    with Image.open(path) as image:
        return jpeg_bytes(image.transpose(Image.Transpose.FLIP_LEFT_RIGHT))


def test_a_whitened_index_ranks_queries_as_its_whitening_applied_by_hand(
    whitened, catalogue_dir, random_model
):
    link, client = whitened
    stored = store.read_index(link)
    query = mirrored(catalogue_dir, "10012")

    response = client.post(
        "/api/v1/search",
        data={"image": upload(query), "k": "10"},
        content_type="multipart/form-data",
    )

    embedder = Embedder(random_model, recipe=TEST_RECIPE, threads=1)
    raw = embedder.embed(embedder.load(query)[None])
    by_hand = whiten.load(link / whiten.FILE).apply(raw)[0]
    raw_rows = np.load(link / store.RAW_FILE)
    stored_by_hand = whiten.load(link / whiten.FILE).apply(raw_rows)
    distances = ((stored_by_hand - by_hand) ** 2).sum(axis=1)
    firsts = [n for n, d in enumerate(stored.items["dup_of"]) if not d]
    expected = sorted(firsts, key=lambda n: distances[n])[:10]
    results = response.get_json()["queries"][0]["results"]
    assert response.status_code == 200
    assert stored.index.d == WHITEN_DIM
    assert [r["id"] for r in results] == [stored.items["id"][n] for n in expected]
    np.testing.assert_allclose(
        [r["distance"] for r in results], distances[expected], rtol=1e-4, atol=1e-5
    )


def test_the_model_check_compares_the_models_dimension_not_the_whitened_one(
    whitened, random_model
):
    link, client = whitened
    manifest = store.read_manifest(link)

    response = client.get("/readyz")

    assert response.status_code == 200
    assert (manifest["embedding_dim"], manifest["model_dim"]) == (WHITEN_DIM, 1280)
    assert response.get_json()["problem"] is None


def overwrite_whitening(folder):
    (folder / whiten.FILE).write_bytes(b"not the fitted whitening")


def delete_whitening(folder):
    (folder / whiten.FILE).unlink()


@pytest.mark.parametrize(
    "damage, reason",
    [
        (overwrite_whitening, "does not match its manifest"),
        (
            delete_whitening,
            "cannot be read: [Errno 2] No such file or directory: '{path}'",
        ),
    ],
)
def test_a_new_index_with_a_broken_whitening_file_is_refused(
    whitened, catalogue_dir, random_model, damage, reason
):
    link, client = whitened
    before = client.get("/readyz").get_json()["index"]["build"]

    build_index(catalogue_dir, random_model, link, whiten_dim=WHITEN_DIM, damage=damage)

    body = client.get("/readyz").get_json()
    path = link.resolve() / whiten.FILE
    assert body["index"]["build"] == before
    assert body["problem"] == (
        f"index at {link.resolve()} cannot be read: whitening file {path} "
        + reason.format(path=path)
    )
    assert client.get("/api/v1/items/10001/similar").status_code == 200


def test_an_index_whose_whitening_does_not_fit_its_vectors_is_refused(
    whitened, catalogue_dir, random_model
):
    link, client = whitened
    before = client.get("/readyz").get_json()["index"]["build"]

    build_index(
        catalogue_dir,
        random_model,
        link,
        whiten_dim=WHITEN_DIM,
        manifest_extra={"model_dim": 2048},
    )

    body = client.get("/readyz").get_json()
    assert body["index"]["build"] == before
    assert body["problem"] == (
        f"index at {link.resolve()} is inconsistent: its whitening maps 1280-d "
        f"model vectors to {WHITEN_DIM}-d ones, the manifest says 2048-d and "
        f"{WHITEN_DIM}-d"
    )
