"""Reading a catalogue folder: which images it holds, under which ids, with which
metadata.

Two layouts are understood:

- the Kaggle "Fashion Product Images" layout: ``images/<id>.jpg`` and a
  ``styles.csv`` whose first column is ``id``. The real file is messy, so reading
  it never fails on a line: the quirks are counted instead (see ``Quirks``);
- any other folder: every jpg, png or webp below it (nested folders included),
  with the relative path without its extension as the id (``shoes/red/01``) and
  no metadata.
"""

import csv
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

STYLES_FILE = "styles.csv"
IMAGES_DIR = "images"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
MISSING_VALUES = ("", "NA")

# What a catalogue's quirks are called in the build report, with what they mean.
QUIRKS = {
    "extra_commas": "lines with more fields than columns, joined into the last one",
    "short_lines": "lines with fewer fields than columns, padded with empty values",
    "missing_values": "NA or empty values, stored as empty strings",
    "rows_without_image": "styles.csv rows whose image is not in images/",
    "images_without_row": "images without a styles.csv row, kept without metadata",
    "duplicate_rows": "styles.csv rows repeating an id, the first one is kept",
    "duplicate_ids": "images sharing an id (e.g. 12.jpg and 12.png), first kept",
    "rows_without_id": "styles.csv lines with an empty id, ignored",
}


class CatalogueError(Exception):
    """A catalogue folder that cannot be read at all."""


@dataclass(eq=False)  # items are compared and hashed by identity
class CatalogueItem:
    id: str
    path: str  # relative to the catalogue folder, '/' separated
    metadata: dict[str, str]


@dataclass
class Catalogue:
    root: Path
    layout: str  # "kaggle" or "folder"
    columns: list[str]  # metadata columns, without "id"
    items: list[CatalogueItem]
    quirks: Counter = field(default_factory=Counter)

    def file(self, item: CatalogueItem) -> Path:
        return self.root / item.path

    def quirk_counts(self) -> dict[str, int]:
        """Every known quirk with its count, zeros included, for the manifest."""
        return {name: self.quirks.get(name, 0) for name in QUIRKS}


def read_catalogue(root: Path) -> Catalogue:
    """Find the layout of ``root`` and read it."""
    root = Path(root).resolve()
    if not root.is_dir():
        raise CatalogueError(f"catalogue folder {root} does not exist")
    if (root / STYLES_FILE).is_file() and (root / IMAGES_DIR).is_dir():
        return read_kaggle(root)
    return read_folder(root)


def read_kaggle(root: Path) -> Catalogue:
    """``images/<id>.<ext>`` plus ``styles.csv``."""
    quirks = Counter()
    columns, rows = read_styles(root / STYLES_FILE, quirks)
    images = _index_by_id(
        ((p.stem, p) for p in _image_files(root / IMAGES_DIR, recursive=False)),
        quirks,
    )

    items = []
    for image_id in sorted(images, key=id_sort_key):
        metadata = rows.get(image_id)
        if metadata is None:
            quirks["images_without_row"] += 1
            metadata = dict.fromkeys(columns, "")
        relative = images[image_id].relative_to(root).as_posix()
        items.append(CatalogueItem(image_id, relative, metadata))
    quirks["rows_without_image"] = sum(1 for i in rows if i not in images)
    return Catalogue(root, "kaggle", columns, items, quirks)


def read_styles(path: Path, quirks: Counter) -> tuple[list[str], dict[str, dict]]:
    """styles.csv -> (metadata columns, {id: {column: value}}); counts quirks."""
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as f:
        reader = csv.reader(f)
        header = [name.strip() for name in next(reader, [])]
        if not header or header[0] != "id":
            raise CatalogueError(f"{path}: the first column must be 'id', not {header}")
        width = len(header)
        rows: dict[str, dict] = {}
        for fields in reader:
            if not fields or fields == [""]:
                continue
            if len(fields) > width:
                # Unquoted commas in the product name, the last column.
                quirks["extra_commas"] += 1
                fields = fields[: width - 1] + [",".join(fields[width - 1 :])]
            elif len(fields) < width:
                quirks["short_lines"] += 1
                fields = fields + [""] * (width - len(fields))
            values = [v.strip() for v in fields]
            missing = sum(v in MISSING_VALUES for v in values[1:])
            quirks["missing_values"] += missing
            row_id = values[0]
            if not row_id:
                quirks["rows_without_id"] += 1
            elif row_id in rows:
                quirks["duplicate_rows"] += 1
            else:
                rows[row_id] = {
                    name: ("" if v in MISSING_VALUES else v)
                    for name, v in zip(header[1:], values[1:], strict=True)
                }
    return header[1:], rows


def read_folder(root: Path) -> Catalogue:
    """Every image below ``root``; ids are relative paths without the extension."""
    quirks = Counter()
    images = _index_by_id(
        (
            (p.relative_to(root).with_suffix("").as_posix(), p)
            for p in _image_files(root, recursive=True)
        ),
        quirks,
    )
    items = [
        CatalogueItem(i, images[i].relative_to(root).as_posix(), {})
        for i in sorted(images, key=id_sort_key)
    ]
    return Catalogue(root, "folder", [], items, quirks)


def id_sort_key(item_id: str) -> tuple:
    """Numbers in numeric order, then the other ids in text order."""
    return (0, int(item_id), "") if item_id.isdigit() else (1, 0, item_id)


def _image_files(folder: Path, recursive: bool) -> list[Path]:
    if recursive:
        found = []
        for parent, dirs, files in os.walk(folder):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            found.extend(Path(parent) / name for name in files)
    else:
        found = [p for p in folder.iterdir() if p.is_file()]
    return sorted(
        p
        for p in found
        if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )


def _index_by_id(pairs, quirks: Counter) -> dict[str, Path]:
    images: dict[str, Path] = {}
    for image_id, path in pairs:
        if image_id in images:
            quirks["duplicate_ids"] += 1
            log.warning("%s and %s share the id %r", images[image_id], path, image_id)
            continue
        images[image_id] = path
    return images
