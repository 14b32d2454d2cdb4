import json

import numpy as np
import pytest
from PIL import Image, ImageDraw

from embedding import whiten
from embedding.preprocess import Recipe
from evaluation import metrics
from evaluation.__main__ import main as evaluation_main
from evaluation.__main__ import searched_as_served
from evaluation.catalogue import read_catalogue
from evaluation.evaluate import evaluate, label_column
from index_builder import build as build_module
from index_builder.build import build_index
from index_builder.store import RAW_FILE, read_index


def unit_rows(*rows):
    x = np.array(rows, dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_precision_counts_missing_answers_as_wrong():
    rel = np.array([[True, False, True, False, False], [True, True, True, True, True]])
    assert metrics.precision_at(rel, 1).tolist() == [1.0, 1.0]
    assert metrics.precision_at(rel, 5).tolist() == [0.4, 1.0]


def test_average_precision_is_normalised_by_min_of_k_and_relevant_count():
    rel = np.array([[True, False, True, False, False]])
    # hits at ranks 1 and 3: (1/1 + 2/3) / min(5, R)
    assert metrics.average_precision_at(rel, np.array([3]), 5) == pytest.approx(
        (1 + 2 / 3) / 3
    )
    assert metrics.average_precision_at(rel, np.array([2]), 5) == pytest.approx(
        (1 + 2 / 3) / 2
    )
    assert metrics.average_precision_at(rel, np.array([40]), 5) == pytest.approx(
        (1 + 2 / 3) / 5
    )


def test_average_precision_is_zero_without_relevant_candidates():
    rel = np.zeros((1, 5), dtype=bool)
    assert metrics.average_precision_at(rel, np.array([0]), 5).tolist() == [0.0]


def test_equal_distances_are_ordered_by_row():
    # Rows 1, 2 and 3 are all at distance 2 from row 0; row 4 is farther.
    x = unit_rows([1, 0, 0], [0, 1, 0], [0, 0, 1], [0, -1, 0], [-1, 0.1, 0])
    rows, dist = metrics.neighbours(x, 4, queries=np.array([0]))
    assert rows.tolist() == [[1, 2, 3, 4]]
    assert dist[0, :3] == pytest.approx([2.0, 2.0, 2.0])


def test_leave_one_out_excludes_the_query_and_its_byte_identical_copies():
    x = unit_rows([1, 0], [1, 0], [1, 0.1], [0, 1])
    groups = metrics.group_ids(["a", "a", "b", "c"])  # rows 0 and 1 are one file
    rows, _ = metrics.neighbours(x, 3, groups)
    assert rows.tolist() == [[2, 3, -1], [2, 3, -1], [0, 1, 3], [2, 0, 1]]


def test_k_larger_than_candidates_pads_with_missing_answers():
    x = unit_rows([1, 0], [0, 1], [1, 1])
    rows, dist = metrics.neighbours(x, 5, queries=np.array([0]))
    assert rows.tolist() == [[2, 1, -1, -1, -1]]
    assert np.isinf(dist[0, 2:]).all()
    labels = np.array(["t", "t", "t"], dtype=object)
    rel = metrics.relevance(labels, np.array([0]), rows)
    assert rel.tolist() == [[True, True, False, False, False]]
    assert metrics.precision_at(rel, 5).tolist() == [0.4]
    counts = metrics.relevant_counts(labels, np.arange(3), np.array([0]))
    assert counts.tolist() == [2]
    assert metrics.average_precision_at(rel, counts, 5).tolist() == [1.0]


def test_relevant_count_leaves_out_the_query_group():
    labels = np.array(["a", "a", "a", "b", ""], dtype=object)
    groups = metrics.group_ids(["h1", "h1", "h2", "h3", "h4"])
    counts = metrics.relevant_counts(labels, groups, np.arange(5))
    assert counts.tolist() == [1, 1, 2, 0, 0]


def test_empty_keys_never_share_a_group():
    assert metrics.group_ids(["x", "", "x", ""]).tolist() == [0, -2, 0, -4]


def small_catalogue():
    """Five items: 0 and 1 are byte-identical shirts, 4 is unlabelled."""
    vectors = unit_rows([1, 0, 0], [1, 0, 0], [0.9, 0.2, 0], [0.8, 0, 0.3], [1, 0, 0])
    items = {
        "id": ["10", "11", "12", "13", "14"],
        "sha256": ["h", "h", "i", "j", "k"],
        "articleType": ["Shirts", "Shirts", "Shirts", "Shoes", ""],
        "baseColour": ["Blue", "Blue", "Red", "Blue", "Blue"],
        "subCategory": ["Top", "Top", "Top", "Foot", "Top"],
        "masterCategory": ["Apparel"] * 4 + [""],
    }
    return vectors, items


def test_evaluation_scores_a_small_catalogue_exactly():
    vectors, items = small_catalogue()
    result = evaluate(vectors, items)
    assert result["queries"] == 4
    assert result["unlabelled"] == 1
    assert result["duplicate_items"] == 1
    # Answers (unlabelled item 14 is no candidate): 10 -> 12, 13; 11 -> 12, 13;
    # 12 -> 10, 11, 13; 13 -> 10, 11, 12. Shirts answer Shirts first, Shoes never.
    at = result["overall"]["articleType"]
    assert at["p@1"] == 0.75
    assert at["p@5"] == pytest.approx(round((1 + 1 + 2 + 0) / 5 / 4, 4))
    assert at["map@10"] == 0.75  # each Shirt query finds all its R shirts first
    colour = result["overall"]["articleType+baseColour"]
    assert colour["p@1"] == 0.0  # nearest shirts are never the same colour
    types = {r["articleType"]: r for r in result["per_article_type"]}
    assert types["Shirts"]["support"] == 3
    assert types["Shoes"]["support"] == 1
    # Equal counts are listed by name.
    assert result["confusions"] == [
        {"query_type": "Shirts", "answer_type": "Shoes", "count": 3, "share": 0.4286},
        {"query_type": "Shoes", "answer_type": "Shirts", "count": 3, "share": 1.0},
    ]


def test_duplicate_collapse_shows_a_file_once():
    vectors, items = small_catalogue()
    result = evaluate(vectors, items, collapse=True)
    # Shoes query: shirts 10 and 11 are one file, so it sees only 10 and 12.
    shoes = [c for c in result["confusions"] if c["query_type"] == "Shoes"]
    assert shoes == [
        {"query_type": "Shoes", "answer_type": "Shirts", "count": 2, "share": 1.0}
    ]


def test_combined_label_is_empty_when_a_part_is_missing():
    items = {
        "id": ["1", "2"],
        "articleType": ["Shirts", "Shirts"],
        "baseColour": ["Red", ""],
    }
    assert label_column(items, "articleType+baseColour").tolist() == ["Shirts/Red", ""]


def test_whitening_decorrelates_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((400, 12)) @ rng.standard_normal((12, 12))
    w = whiten.fit(x, 6, shrink=0.0)
    projected = (x - w.mean) @ w.projection
    assert np.cov(projected.T, bias=True) == pytest.approx(np.eye(6), abs=1e-3)
    assert np.linalg.norm(w.apply(x), axis=1) == pytest.approx(np.ones(400), abs=1e-5)
    w.save(tmp_path / whiten.FILE)
    again = whiten.load(tmp_path / whiten.FILE)
    assert np.array_equal(again.apply(x), w.apply(x))


def draw_catalogue(folder, per_type=6):
    """Portrait images of three drawn article types, one exact duplicate, one
    image without a styles row."""
    rng = np.random.default_rng(0)
    (folder / "images").mkdir(parents=True)
    rows = [
        "id,gender,masterCategory,subCategory,articleType,baseColour,season,"
        "year,usage,productDisplayName"
    ]
    shapes = {"Tshirts": "rect", "Watches": "ellipse", "Caps": "triangle"}
    item_id = 100
    for article, shape in shapes.items():
        for _ in range(per_type):
            colour = tuple(int(c) for c in rng.integers(0, 200, 3))
            img = Image.new("RGB", (60, 80), "white")
            draw = ImageDraw.Draw(img)
            box = [int(v) for v in (8 + rng.integers(0, 6), 10, 52, 70)]
            if shape == "rect":
                draw.rectangle(box, fill=colour)
            elif shape == "ellipse":
                draw.ellipse(box, fill=colour)
            else:
                draw.polygon([(30, 10), (box[0], 70), (52, 70)], fill=colour)
            img.save(folder / "images" / f"{item_id}.jpg", quality=90)
            rows.append(
                f"{item_id},Men,Apparel,Top,{article},Red,Fall,2012,Casual,"
                f"Item {item_id}, drawn"
            )
            item_id += 1
    dup = (folder / "images" / "100.jpg").read_bytes()
    (folder / "images" / f"{item_id}.jpg").write_bytes(dup)
    rows.append(f"{item_id},Men,Apparel,Top,Tshirts,Red,Fall,2012,Casual,Copy")
    Image.open(folder / "images" / "101.jpg").save(
        folder / "images" / f"{item_id + 1}.jpg", quality=60
    )
    (folder / "styles.csv").write_text("\n".join(rows) + "\n")


def test_report_renders_for_a_generated_catalogue(tmp_path, random_model):
    catalogue = tmp_path / "shop"
    draw_catalogue(catalogue)
    items = read_catalogue(catalogue)
    assert len(items["id"]) == 20
    assert items["dup_of"].count("100") == 1

    build_index(catalogue, random_model, tmp_path / "indexes" / "shop", progress=False)
    out = tmp_path / "report"
    code = evaluation_main(
        [
            str(tmp_path / "indexes" / "shop"),
            "--out",
            str(out),
            "--catalogue",
            str(catalogue),
        ]
    )
    assert code == 0

    report = json.loads((out / "report.json").read_text())
    assert set(report) == {
        "index",
        "items",
        "queries",
        "unlabelled",
        "duplicate_items",
        "collapse_duplicates",
        "definitions",
        "overall",
        "per_article_type",
        "confusions",
        "samples",
    }
    assert (report["items"], report["queries"], report["unlabelled"]) == (20, 19, 1)
    assert report["duplicate_items"] == 1
    assert set(report["overall"]) == {
        "articleType",
        "subCategory",
        "masterCategory",
        "articleType+baseColour",
    }
    assert sorted(
        (r["articleType"], r["support"]) for r in report["per_article_type"]
    ) == [("Caps", 6), ("Tshirts", 7), ("Watches", 6)]
    assert report["index"]["backbone"] == "mobilenet_v2"
    samples = report["samples"]["best"] + report["samples"]["worst"]
    assert len(samples) == 12  # 3 best and 3 worst types, 2 queries each

    page = (out / "report.html").read_text()
    assert page.count("<table") == 2 + (1 if report["confusions"] else 0)
    assert page.count("<svg") == 1
    assert page.count("<rect") == 3  # one bar per article type
    figures = sum(1 + len(s["answers"]) for s in samples)
    assert page.count('src="data:image/jpeg;base64,') == figures
    assert "http://" not in page and "https://" not in page


def test_whitening_stored_with_an_index_is_checked_when_loaded(tmp_path):
    x = np.random.default_rng(1).standard_normal((50, 8))
    entry = whiten.save_with_index(whiten.fit(x, 4), tmp_path)
    assert (entry["file"], entry["input_dim"], entry["dim"]) == (whiten.FILE, 8, 4)
    manifest = {whiten.MANIFEST_KEY: entry}
    assert whiten.load_for_index(tmp_path, manifest).dim == 4
    assert whiten.load_for_index(tmp_path, {}) is None

    (tmp_path / whiten.FILE).write_bytes(b"not the saved transform")
    with pytest.raises(whiten.WhiteningError, match="does not match its manifest"):
        whiten.load_for_index(tmp_path, manifest)


def test_recipe_defaults_are_the_default_recipe_of_a_224_model():
    assert Recipe() == Recipe(256, 192, "pad", False)


@pytest.mark.parametrize(
    ("input_size", "expected"), [([224, 224], (256, 192)), ([448, 448], (512, 384))]
)
def test_default_recipe_is_a_3_4_portrait_with_the_cards_pixel_count(
    input_size, expected
):
    from embedding.card import ModelCard
    from embedding.model import default_recipe

    card = ModelCard(
        "mobilenet_v2",
        "random",
        "",
        "",
        [0.5] * 3,
        [0.5] * 3,
        input_size,
        1280,
        17,
        "m.onnx",
        "",
    )
    recipe = default_recipe(card)
    assert (recipe.height, recipe.width, recipe.resize, recipe.flip) == (
        *expected,
        "pad",
        False,
    )


def test_an_augmented_index_is_scored_from_its_vectors_before_augmentation(
    tmp_path, random_model, monkeypatch
):
    monkeypatch.setattr(build_module, "MIN_WHITEN_IMAGES", 10)
    monkeypatch.setattr(build_module, "WHITEN_IMAGES_PER_DIM", 4)
    catalogue = tmp_path / "shop"
    draw_catalogue(catalogue)
    link = tmp_path / "indexes" / "shop"
    build_index(catalogue, random_model, link, progress=False)
    stored = read_index(link)

    vectors, search = searched_as_served(stored)
    code = evaluation_main([str(link), "--out", str(tmp_path / "report")])

    whitened = stored.whitening.apply(np.load(link / RAW_FILE))
    expected = evaluate(whitened, stored.items, search=search)["overall"]
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert stored.manifest["augmentation"] == {"k": 10, "alpha": 2.0}
    np.testing.assert_allclose(vectors, whitened, atol=1e-6)
    assert (search.k, search.alpha, search.expand, search.expand_alpha) == (
        10,
        2.0,
        2,
        3.0,
    )
    np.testing.assert_allclose(search.augmented, stored.vectors(), atol=1e-5)
    assert code == 0
    assert report["overall"] == expected


def test_an_augmented_index_whose_vectors_do_not_match_is_refused(
    tmp_path, random_model, monkeypatch
):
    monkeypatch.setattr(build_module, "MIN_WHITEN_IMAGES", 10)
    monkeypatch.setattr(build_module, "WHITEN_IMAGES_PER_DIM", 4)
    catalogue = tmp_path / "shop"
    draw_catalogue(catalogue)
    link = tmp_path / "indexes" / "shop"
    build_index(catalogue, random_model, link, progress=False, augmentation=False)
    stored = read_index(link)
    stored.manifest["augmentation"] = {"k": 10, "alpha": 2.0}

    with pytest.raises(ValueError, match="not its raw vectors whitened and augmented"):
        searched_as_served(stored)
