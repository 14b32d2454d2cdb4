"""Writing a generated demo catalogue: images/<id>.jpg and styles.csv."""

import csv
import json
import random
from pathlib import Path

from index_builder.store import STYLE_COLUMNS

from .draw import ARTICLES, COLOURS, PATTERNS, draw_item

COLUMNS = ("id", *STYLE_COLUMNS)  # the Kaggle styles.csv header
MARKER = "demo.json"  # tells the service that this catalogue is generated
FIRST_ID = 10001
BRANDS = ("Northwind", "Lumen", "Kestrel", "Marlow", "Tidewater", "Orchard")
PATTERN_WORDS = {
    "solid": "",
    "stripes": "Striped ",
    "dots": "Polka Dot ",
    "checks": "Checked ",
}


def describe(r: random.Random, item_id: int) -> dict:
    article = r.choice(sorted(ARTICLES))
    master, sub, _, genders = ARTICLES[article]
    gender = r.choice(genders)
    colour = r.choice(sorted(COLOURS))
    pattern = r.choice(PATTERNS)
    name = f"{r.choice(BRANDS)} {gender} {colour} {PATTERN_WORDS[pattern]}{article}"
    return {
        "id": str(item_id),
        "gender": gender,
        "masterCategory": master,
        "subCategory": sub,
        "articleType": article,
        "baseColour": colour,
        "season": r.choice(("Summer", "Winter", "Fall", "Spring")),
        "year": str(r.randint(2011, 2018)),
        "usage": r.choice(("Casual", "Sports", "Formal")),
        "productDisplayName": name,
        "pattern": pattern,
    }


def generate(out: Path, count: int = 300, seed: int = 0) -> list[dict]:
    """Write ``count`` items into ``out``; the same seed gives the same bytes."""
    out = Path(out)
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    r = random.Random(seed)
    rows = []
    for i in range(count):
        row = describe(r, FIRST_ID + i)
        image = draw_item(row["articleType"], row["baseColour"], row.pop("pattern"), r)
        image.save(images / f"{row['id']}.jpg", quality=90)
        rows.append(row)

    with open(out / "styles.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    marker = {
        "demo": True,
        "count": count,
        "seed": seed,
        "note": "generated drawings, not a real catalogue",
    }
    (out / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
    return rows
