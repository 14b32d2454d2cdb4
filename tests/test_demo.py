"""The generated demo catalogue."""

import csv
import hashlib
import json

from PIL import Image

from demo.__main__ import main
from demo.catalogue import COLUMNS, generate


def digests(folder) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((folder / "images").iterdir())
    }


def test_the_demo_is_a_kaggle_layout_catalogue(tmp_path):
    assert main([str(tmp_path), "--count", "25", "--seed", "3"]) == 0

    with open(tmp_path / "styles.csv", newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert tuple(reader.fieldnames) == COLUMNS
    assert len(rows) == 25
    assert all(all(row[c] for c in COLUMNS) for row in rows)
    assert sorted(digests(tmp_path)) == sorted(f"{row['id']}.jpg" for row in rows)
    with Image.open(tmp_path / "images" / f"{rows[0]['id']}.jpg") as image:
        assert (image.format, image.size, image.mode) == ("JPEG", (60, 80), "RGB")
        assert image.getpixel((0, 0)) == (255, 255, 255)
    assert json.loads((tmp_path / "demo.json").read_text())["demo"] is True


def test_the_same_seed_gives_the_same_bytes(tmp_path):
    generate(tmp_path / "a", count=20, seed=7)
    generate(tmp_path / "b", count=20, seed=7)
    generate(tmp_path / "c", count=20, seed=8)

    assert digests(tmp_path / "a") == digests(tmp_path / "b")
    assert (tmp_path / "a" / "styles.csv").read_bytes() == (
        tmp_path / "b" / "styles.csv"
    ).read_bytes()
    assert digests(tmp_path / "a") != digests(tmp_path / "c")


def test_the_demo_varies_articles_colours_and_images(tmp_path):
    rows = generate(tmp_path, count=300, seed=0)

    assert len({row["articleType"] for row in rows}) == 10
    assert len({row["masterCategory"] for row in rows}) == 3
    assert len({row["baseColour"] for row in rows}) >= 12
    assert len(set(digests(tmp_path).values())) == 300
