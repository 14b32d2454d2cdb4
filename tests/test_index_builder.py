import io
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from embedding import augment, whiten
from embedding.card import ModelCardError, read_card
from embedding.model import Embedder
from index_builder import build as build_module
from index_builder import store
from index_builder.__main__ import default_model, main
from index_builder.build import build_index, read_skips, whitening_dim
from index_builder.catalogue import read_catalogue

HEADER = (
    "id,gender,masterCategory,subCategory,articleType,baseColour,season,year,"
    "usage,productDisplayName"
)
STYLES = [
    HEADER,
    "1,Men,Apparel,Topwear,Shirts,Blue,Fall,2011,Casual,Blue Shirt",
    # Unquoted commas in the product name: three extra fields.
    "2,Women,Apparel,Topwear,Tops,Red,Summer,2012,Casual,Top, red, slim, cotton",
    "3,Women,Footwear,Shoes,Heels,Black,NA,2012,,Black Heels",
    "4,Men,Accessories,Bags,Backpacks,Green,Fall,2013,Casual,Green Backpack",
    '5,Men,Apparel,Topwear,Tshirts,White,Fall,2013,Casual,"Tee, quoted"',
    "6,Women,Apparel,Dress,Dresses,Pink,Spring,2014,Party,Pink Dress",
    "7,Women,Apparel,Dress,Dresses,Grey,Spring,2014,Party,Grey Dress",
    "8,Men,Footwear,Shoes,Sneakers,Yellow,Summer,2015,Sports,Yellow Sneakers",
    "9,Men,Footwear,Shoes,Sneakers,Purple,Summer,2015,Sports,Purple Sneakers",
    "10,Men,Apparel,Topwear,Shirts,Navy,Fall,2011,Casual,Corrupt Shirt",
    "11,Men,Apparel,Topwear,Shirts,Navy,Fall,2011,Casual,Empty Shirt",
    "12,Men,Apparel,Topwear,Shirts,Navy,Fall,2011,Casual,Text Shirt",
    "13,Men,Apparel,Topwear,Shirts,Blue,Fall,2011,Casual,Blue Shirt Again",
    "99,Men,Apparel,Topwear,Shirts,Blue,Fall,2011,Casual,Row Without Image",
]


class _NonEmptyText:
    """Equal to any non-empty string: for messages whose wording may change."""

    def __eq__(self, other):
        return isinstance(other, str) and len(other) > 0


ANY = _NonEmptyText()


def photo(seed: int, mode: str = "RGB", size=(60, 80)) -> Image.Image:
    """A reproducible noisy picture with a coloured block: distinct per seed."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    pixels[10:40, 10:40] = rng.integers(0, 256, 3, dtype=np.uint8)
    img = Image.fromarray(pixels, "RGB")
    if mode == "RGBA":
        img = img.convert("RGBA")
        img.putalpha(Image.fromarray(rng.integers(0, 256, pixels.shape[:2], np.uint8)))
    elif mode != "RGB":
        img = img.convert(mode)
    return img


def encode(img: Image.Image, fmt: str = "JPEG") -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt)
    return buffer.getvalue()


def make_catalogue(root: Path) -> Path:
    """A Kaggle-layout catalogue with every quirk the builder must survive."""
    images = root / "images"
    images.mkdir(parents=True)
    (root / "styles.csv").write_text("\n".join(STYLES) + "\n")
    for seed in range(1, 7):
        (images / f"{seed}.jpg").write_bytes(encode(photo(seed)))
    (images / "7.png").write_bytes(encode(photo(7, "RGBA"), "PNG"))
    (images / "8.jpg").write_bytes(encode(photo(8, "L")))
    (images / "9.jpg").write_bytes(encode(photo(9, "CMYK")))
    (images / "10.jpg").write_bytes(encode(photo(10))[:300])  # truncated
    (images / "11.jpg").write_bytes(b"")
    (images / "12.jpg").write_bytes(b"this is not an image\n")
    shutil.copy(images / "1.jpg", images / "13.jpg")  # byte-identical copy
    (images / "50.jpg").write_bytes(encode(photo(50)))  # no styles.csv row
    (images / "notes.txt").write_text("not part of the catalogue")
    return root


@pytest.fixture
def catalogue(tmp_path):
    return make_catalogue(tmp_path / "shop")


@pytest.fixture
def link(tmp_path):
    return tmp_path / "indexes" / "shop"


def build(catalogue, model, link, **kwargs):
    kwargs.setdefault("batch_size", 4)
    return build_index(catalogue, model, link, progress=False, **kwargs)


def test_styles_quirks_are_counted_and_repaired(catalogue):
    cat = read_catalogue(catalogue)
    by_id = {item.id: item for item in cat.items}

    assert cat.layout == "kaggle"
    assert [i.id for i in cat.items] == [str(n) for n in range(1, 14)] + ["50"]
    assert by_id["2"].metadata["productDisplayName"] == "Top, red, slim, cotton"
    assert by_id["5"].metadata["productDisplayName"] == "Tee, quoted"
    assert by_id["3"].metadata["season"] == ""
    assert by_id["3"].metadata["usage"] == ""
    assert by_id["50"].metadata == dict.fromkeys(cat.columns, "")
    assert by_id["7"].path == "images/7.png"
    assert cat.quirk_counts() == {
        "extra_commas": 1,
        "short_lines": 0,
        "missing_values": 2,
        "rows_without_image": 1,
        "images_without_row": 1,
        "duplicate_rows": 0,
        "duplicate_ids": 0,
        "rows_without_id": 0,
    }


def test_short_duplicate_and_idless_lines_are_counted(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "1.jpg").write_bytes(encode(photo(1)))
    (tmp_path / "images" / "1.png").write_bytes(encode(photo(2), "PNG"))
    (tmp_path / "styles.csv").write_text(
        "id,articleType,productDisplayName\n1,Shirts\n1,Tops,Second\n,Tops,No id\n\n"
    )

    cat = read_catalogue(tmp_path)

    assert [(i.id, i.path) for i in cat.items] == [("1", "images/1.jpg")]
    assert cat.items[0].metadata == {"articleType": "Shirts", "productDisplayName": ""}
    counts = cat.quirk_counts()
    assert (counts["short_lines"], counts["duplicate_rows"]) == (1, 1)
    assert (counts["rows_without_id"], counts["duplicate_ids"]) == (1, 1)
    assert counts["missing_values"] == 1


def test_build_reports_exact_counts_skips_and_duplicates(catalogue, link, random_model):
    result = build(catalogue, random_model, link)
    index = store.read_index(link)
    items = index.items
    manifest = index.manifest
    card = read_card(random_model)

    good = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "13", "50"]
    assert items["id"] == good
    assert items["dup_of"] == [""] * 9 + ["1", ""]
    assert items["sha256"][0] == items["sha256"][9]
    assert len(set(items["sha256"])) == 10
    assert items["path"][6] == "images/7.png"
    assert items["productDisplayName"][1] == "Top, red, slim, cotton"
    assert items["season"][2] == ""
    assert items["productDisplayName"][10] == ""
    assert list(items) == [*store.BASE_COLUMNS, *store.STYLE_COLUMNS]

    assert read_skips(link) == [
        {"id": "10", "path": "images/10.jpg", "reason": "truncated", "message": ANY},
        {"id": "11", "path": "images/11.jpg", "reason": "empty", "message": ANY},
        {"id": "12", "path": "images/12.jpg", "reason": "not_an_image", "message": ANY},
    ]
    assert [s.id for s in result.skipped] == ["10", "11", "12"]
    assert manifest["skipped"] == {"empty": 1, "not_an_image": 1, "truncated": 1}
    assert manifest["item_count"] == 11
    assert manifest["duplicates"] == 1
    assert (manifest["embedded"], manifest["reused"]) == (10, 0)
    assert manifest["backbone"] == "mobilenet_v2"
    assert manifest["embedding_dim"] == 1280
    assert manifest["model_dim"] == 1280
    assert manifest["whitening"] is None
    assert manifest["whitening_note"] == (
        "not whitened: 10 distinct images, fewer than the 2000 a whitening needs "
        "to find better neighbours"
    )
    assert not (link / store.RAW_FILE).exists()
    assert (manifest["augmentation"], manifest["query_expansion"]) == (None, None)
    assert manifest["model_card_sha256"] == card.sha256()
    assert manifest["model_file"] == "mobilenet_v2.onnx"
    assert manifest["variant"] == "fp32"
    assert manifest["random_weights"] is True
    assert manifest["recipe"] == {
        "height": 256,
        "width": 192,
        "resize": "pad",
        "flip": False,
    }
    assert manifest["source"] == str(catalogue.resolve())
    assert manifest["layout"] == "kaggle"
    assert manifest["catalogue"]["extra_commas"] == 1
    assert manifest["catalogue"]["rows_without_image"] == 1
    assert manifest["catalogue"]["images_without_row"] == 1
    assert manifest["build_seconds"] > 0

    vectors = index.vectors()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(vectors[0], vectors[9])
    distances, rows = index.index.search(vectors[3:4], 1)
    assert rows[0, 0] == 3 and distances[0, 0] < 1e-6


def test_stored_vectors_equal_the_embedders_for_each_image(
    catalogue, link, random_model
):
    build(catalogue, random_model, link)
    index = store.read_index(link)
    embedder = Embedder(random_model)
    for row in (0, 6, 7, 8):  # RGB, PNG with alpha, grayscale, CMYK
        path = catalogue / index.items["path"][row]
        expected = embedder.embed(embedder.load(path.read_bytes())[None])[0]
        np.testing.assert_allclose(index.vectors()[row], expected, atol=1e-5)


def test_rebuild_embeds_only_new_images_and_drops_removed_ones(
    catalogue, link, random_model
):
    build(catalogue, random_model, link)
    before = store.read_index(link)
    old_vectors = dict(zip(before.items["id"], before.vectors().copy(), strict=True))
    (catalogue / "images" / "60.jpg").write_bytes(encode(photo(60)))
    (catalogue / "images" / "61.png").write_bytes(encode(photo(61), "PNG"))
    (catalogue / "images" / "4.jpg").unlink()

    build(catalogue, random_model, link)
    after = store.read_index(link)

    assert (after.manifest["embedded"], after.manifest["reused"]) == (2, 9)
    assert after.items["id"] == ["1", "2", "3", "5", "6", "7", "8", "9", "13", "50"] + [
        "60",
        "61",
    ]
    for n, item_id in enumerate(after.items["id"][:10]):
        np.testing.assert_array_equal(after.vectors()[n], old_vectors[item_id])
    assert after.path != before.path


def test_full_rebuild_embeds_everything(catalogue, link, random_model):
    build(catalogue, random_model, link)
    build(catalogue, random_model, link, full=True)

    manifest = store.read_manifest(link)
    assert (manifest["embedded"], manifest["reused"]) == (10, 0)


def test_changed_model_embeds_everything(catalogue, link, random_model, tmp_path):
    build(catalogue, random_model, link)
    other = tmp_path / "other-model"
    shutil.copytree(random_model.parent, other)
    card = json.loads((other / "mobilenet_v2.json").read_text())
    card["versions"]["note"] = "a different model card"
    (other / "mobilenet_v2.json").write_text(json.dumps(card))

    build(catalogue, other / "mobilenet_v2.onnx", link)

    manifest = store.read_manifest(link)
    assert (manifest["embedded"], manifest["reused"]) == (10, 0)


@pytest.mark.parametrize("error", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_failed_build_leaves_previous_index_loadable_and_unchanged(
    catalogue, link, random_model, monkeypatch, error
):
    build(catalogue, random_model, link)
    before = store.read_index(link)
    before_vectors = before.vectors().copy()
    builds_before = sorted((link.parent / "shop.builds").iterdir())
    (catalogue / "images" / "60.jpg").write_bytes(encode(photo(60)))
    calls = []
    real_embed = Embedder.embed

    def embed_then_fail(self, batch):
        calls.append(len(batch))
        if len(calls) > 1:
            raise error
        return real_embed(self, batch)

    monkeypatch.setattr(Embedder, "embed", embed_then_fail)
    with pytest.raises(type(error)):
        build(catalogue, random_model, link, batch_size=2, full=True)

    assert calls == [2, 2]
    after = store.read_index(link)
    assert after.path == before.path
    assert after.manifest == before.manifest
    assert after.items == before.items
    np.testing.assert_array_equal(after.vectors(), before_vectors)
    assert sorted((link.parent / "shop.builds").iterdir()) == builds_before


def test_bare_folder_ids_are_relative_paths(tmp_path, random_model):
    root = tmp_path / "photos"
    (root / "shoes" / "red").mkdir(parents=True)
    (root / "bags").mkdir()
    (root / ".hidden").mkdir()
    (root / "shoes" / "red" / "a.JPG").write_bytes(encode(photo(1)))
    (root / "shoes" / "b.png").write_bytes(encode(photo(2, "RGBA"), "PNG"))
    (root / "bags" / "c.webp").write_bytes(encode(photo(3), "WEBP"))
    (root / "top.jpeg").write_bytes(encode(photo(4)))
    (root / "readme.txt").write_text("ignored")
    (root / ".hidden" / "d.jpg").write_bytes(encode(photo(5)))
    link = tmp_path / "indexes" / "photos"

    build(root, random_model, link)

    index = store.read_index(link)
    assert index.items["id"] == ["bags/c", "shoes/b", "shoes/red/a", "top"]
    assert index.items["path"] == [
        "bags/c.webp",
        "shoes/b.png",
        "shoes/red/a.JPG",
        "top.jpeg",
    ]
    assert list(index.items) == list(store.BASE_COLUMNS)
    assert index.manifest["layout"] == "folder"
    assert index.manifest["embedded"] == 4


def test_cli_refuses_a_missing_catalogue_with_exit_2(tmp_path, capsys):
    code = main([str(tmp_path / "nowhere"), "--out", str(tmp_path / "indexes/x")])

    assert code == 2
    assert "catalogue folder" in capsys.readouterr().err
    assert not (tmp_path / "indexes").exists()


def test_cli_names_the_index_after_the_catalogue_and_flags_random_weights(
    catalogue, random_model, tmp_path, monkeypatch, caplog
):
    monkeypatch.chdir(tmp_path)
    caplog.set_level(logging.INFO)

    code = main([str(catalogue), "--model", str(random_model), "--no-progress"])

    assert code == 0
    manifest = store.read_manifest(tmp_path / "indexes" / "shop")
    assert manifest["random_weights"] is True
    assert (tmp_path / "indexes" / "latest").resolve() == (
        tmp_path / "indexes" / "shop"
    ).resolve()
    assert any("RANDOM WEIGHTS" in r.getMessage() for r in caplog.records)
    assert any("built indexes/shop: 11 items" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "requested, images, model_dim, expected",
    [
        (512, 9461, 1280, (512, "whitened to 512-d")),
        (512, 2000, 1280, (500, "whitened to 500-d, not 512: 2000 distinct images")),
        (2048, 44000, 1280, (1280, "whitened to 1280-d, not 2048: the model has 1280")),
        (
            512,
            1999,
            1280,
            (
                0,
                "not whitened: 1999 distinct images, fewer than the 2000 a "
                "whitening needs to find better neighbours",
            ),
        ),
        (0, 9461, 1280, (0, "not whitened (turned off)")),
    ],
)
def test_whitening_keeps_the_dimensions_the_catalogue_supports(
    requested, images, model_dim, expected
):
    assert whitening_dim(requested, images, model_dim) == expected


@pytest.fixture
def small_catalogues_whiten(monkeypatch):
    """Let the 10-image test catalogue be whitened (to at most 2 dimensions)."""
    monkeypatch.setattr(build_module, "MIN_WHITEN_IMAGES", 10)
    monkeypatch.setattr(build_module, "WHITEN_IMAGES_PER_DIM", 5)


def distinct_rows(items) -> list[int]:
    return [n for n, d in enumerate(items["dup_of"]) if not d]


def sha_groups(items) -> np.ndarray:
    return np.unique(np.asarray(items["sha256"]), return_inverse=True)[1]


def test_a_whitened_build_stores_whitened_vectors_and_keeps_the_models(
    catalogue, link, random_model, small_catalogues_whiten
):
    build(catalogue, random_model, link, whiten_dim=2, augmentation=False)
    index = store.read_index(link)
    manifest = index.manifest
    raw = np.load(link / store.RAW_FILE)
    embedder = Embedder(random_model)

    assert manifest["whitening"] == {
        "file": whiten.FILE,
        "sha256": ANY,
        "input_dim": 1280,
        "dim": 2,
    }
    assert (manifest["embedding_dim"], manifest["model_dim"]) == (2, 1280)
    assert manifest["whitening_note"] == "whitened to 2-d"
    assert (raw.dtype, raw.shape) == (np.float32, (11, 1280))
    for row in (0, 6):
        path = catalogue / index.items["path"][row]
        expected = embedder.embed(embedder.load(path.read_bytes())[None])[0]
        np.testing.assert_allclose(raw[row], expected, atol=1e-5)
    fitted = whiten.fit(raw[distinct_rows(index.items)], 2, power=0.25)
    np.testing.assert_allclose(index.whitening.projection, fitted.projection)
    np.testing.assert_allclose(index.vectors(), fitted.apply(raw), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(index.vectors(), axis=1), 1.0, 1e-5)
    assert manifest["augmentation"] is None
    assert manifest["query_expansion"] == {"answers": 2, "alpha": 3.0}


def test_a_whitened_build_stores_its_vectors_augmented_with_their_neighbours(
    catalogue, link, random_model, small_catalogues_whiten
):
    build(catalogue, random_model, link, whiten_dim=2)
    index = store.read_index(link)
    raw = np.load(link / store.RAW_FILE)

    whitened = index.whitening.apply(raw)
    expected = augment.augment(
        whitened, k=10, alpha=2.0, groups=sha_groups(index.items)
    )
    assert index.manifest["augmentation"] == {"k": 10, "alpha": 2.0}
    assert index.manifest["query_expansion"] == {"answers": 2, "alpha": 3.0}
    np.testing.assert_allclose(index.vectors(), expected, atol=1e-6)
    assert not np.allclose(index.vectors(), whitened, atol=1e-3)
    # Item 13 (row 9), a byte-identical copy of item 1 (row 0), is stored as it.
    assert index.items["dup_of"][9] == "1"
    np.testing.assert_array_equal(index.vectors()[9], index.vectors()[0])


def test_a_rebuild_reuses_the_models_vectors_and_refits_the_whitening(
    catalogue, link, random_model, small_catalogues_whiten
):
    build(catalogue, random_model, link, whiten_dim=2)
    before = store.read_index(link)
    old_raw = dict(zip(before.items["id"], np.load(link / store.RAW_FILE), strict=True))
    (catalogue / "images" / "60.jpg").write_bytes(encode(photo(60)))

    build(catalogue, random_model, link, whiten_dim=2)
    after = store.read_index(link)
    raw = np.load(link / store.RAW_FILE)

    assert (after.manifest["embedded"], after.manifest["reused"]) == (1, 10)
    for n, item_id in enumerate(after.items["id"][:11]):
        np.testing.assert_array_equal(raw[n], old_raw[item_id])
    refitted = whiten.fit(raw[distinct_rows(after.items)], 2, power=0.25)
    np.testing.assert_allclose(after.whitening.projection, refitted.projection)
    assert not np.allclose(after.whitening.projection, before.whitening.projection)
    # Augmented again from the model's vectors, not from the stored ones.
    expected = augment.augment(
        refitted.apply(raw), k=10, alpha=2.0, groups=sha_groups(after.items)
    )
    np.testing.assert_allclose(after.vectors(), expected, atol=1e-6)


def test_an_unwhitened_live_index_lends_its_stored_vectors_to_a_whitened_build(
    catalogue, link, random_model, small_catalogues_whiten
):
    build(catalogue, random_model, link, whiten_dim=0)
    live = store.read_index(link)
    plain = live.vectors().copy()

    build(catalogue, random_model, link, whiten_dim=2)

    manifest = store.read_manifest(link)
    assert (manifest["embedded"], manifest["reused"]) == (0, 10)
    np.testing.assert_array_equal(np.load(link / store.RAW_FILE), plain)


def test_the_variant_setting_chooses_the_default_model(random_model_dir):
    fp32 = default_model(random_model_dir, environ={})
    int8 = default_model(random_model_dir, environ={"MODEL_VARIANT": "int8"})

    assert fp32 == random_model_dir / "mobilenet_v2.onnx"
    assert int8 == random_model_dir / "mobilenet_v2-int8.onnx"
    with pytest.raises(ModelCardError, match="MODEL_VARIANT='fp8' is not a model"):
        default_model(random_model_dir, environ={"MODEL_VARIANT": "fp8"})


def test_cli_without_the_chosen_variants_model_exits_2(
    catalogue, random_model_dir, tmp_path, monkeypatch, capsys
):
    models = tmp_path / "models"
    shutil.copytree(random_model_dir, models)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MODEL_VARIANT", "int8")

    code = main([str(catalogue), "--no-progress"])

    assert code == 2
    assert capsys.readouterr().err == (
        "error: no model at models/mobilenet_v2-int8.onnx: run 'make model' first "
        "(with MODEL_VARIANT=int8 set, 'make model VARIANT=int8')\n"
    )
    assert not (tmp_path / "indexes").exists()


def test_cli_no_whiten_stores_the_models_vectors(
    catalogue, random_model, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)

    code = main(
        [str(catalogue), "--model", str(random_model), "--no-progress", "--no-whiten"]
    )

    manifest = store.read_manifest(tmp_path / "indexes" / "shop")
    assert code == 0
    assert (manifest["whitening"], manifest["embedding_dim"]) == (None, 1280)
    assert manifest["whitening_note"] == "not whitened (turned off)"


def test_cli_no_augment_and_no_expand_turn_them_off(
    catalogue, random_model, tmp_path, monkeypatch, small_catalogues_whiten
):
    monkeypatch.chdir(tmp_path)
    argv = [str(catalogue), "--model", str(random_model), "--no-progress"]

    code = main([*argv, "--whiten-dim", "2", "--no-augment", "--no-expand"])

    index = store.read_index(tmp_path / "indexes" / "shop")
    raw = np.load(index.path / store.RAW_FILE)
    assert code == 0
    assert (index.manifest["augmentation"], index.manifest["query_expansion"]) == (
        None,
        None,
    )
    np.testing.assert_allclose(index.vectors(), index.whitening.apply(raw), atol=1e-6)
