"""A labelled catalogue folder (images/<id>.jpg + styles.csv) as index item columns.

Only what the evaluation's own experiments need: the index builder has the full
reader. The columns match ``index_builder.store`` so that an index written from
them evaluates like a built one.
"""

import csv
import hashlib
from pathlib import Path

from index_builder.store import BASE_COLUMNS, STYLE_COLUMNS

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
MISSING = {"", "NA", "N/A", "nan", "None"}


def read_styles(path: Path) -> dict[str, dict]:
    """styles.csv rows by id. Extra commas (unquoted in product names) are folded
    back into the last column; "NA" and blanks become ""."""
    rows = {}
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        reader = csv.reader(f)
        header = next(reader)
        last = len(header) - 1
        for fields in reader:
            if len(fields) < len(header) - 1 or not fields:
                continue
            if len(fields) > len(header):
                fields = fields[:last] + [",".join(fields[last:])]
            row = dict(zip(header, fields, strict=False))
            rows[row["id"].strip()] = {
                k: ("" if (v or "").strip() in MISSING else v.strip())
                for k, v in row.items()
            }
    return rows


def read_catalogue(folder: Path) -> dict[str, list]:
    """Item columns for every image in ``folder/images`` (sorted by id)."""
    folder = Path(folder)
    styles_file = folder / "styles.csv"
    styles = read_styles(styles_file) if styles_file.exists() else {}
    images = sorted(
        (
            p
            for p in (folder / "images").iterdir()
            if p.suffix.lower() in IMAGE_SUFFIXES
        ),
        key=lambda p: (len(p.stem), p.stem),
    )
    items: dict[str, list] = {name: [] for name in (*BASE_COLUMNS, *STYLE_COLUMNS)}
    first_by_hash: dict[str, str] = {}
    for image in images:
        digest = hashlib.sha256(image.read_bytes()).hexdigest()
        style = styles.get(image.stem, {})
        items["id"].append(image.stem)
        items["path"].append(str(image.relative_to(folder)))
        items["sha256"].append(digest)
        items["dup_of"].append(first_by_hash.setdefault(digest, image.stem))
        if items["dup_of"][-1] == image.stem:
            items["dup_of"][-1] = ""
        for name in STYLE_COLUMNS:
            items[name].append(style.get(name, ""))
    return items
