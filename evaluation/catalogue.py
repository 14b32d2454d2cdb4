"""A labelled catalogue folder as index item columns, for the variants study.

Reads the folder with the index builder's own reader, so the study sees exactly
the items, metadata and duplicate marks that a built index would hold.
"""

from pathlib import Path

from index_builder.build import hash_files
from index_builder.catalogue import read_catalogue as read_folder


def read_catalogue(folder: Path) -> dict[str, list]:
    """Item columns (``id, path, sha256, dup_of`` and the metadata) in id order,
    without the files that cannot be read."""
    catalogue = read_folder(Path(folder))
    hashes, _ = hash_files(catalogue)
    kept = [item for item in catalogue.items if item.id in hashes]
    first: dict[str, str] = {}
    items = {
        "id": [i.id for i in kept],
        "path": [i.path for i in kept],
        "sha256": [hashes[i.id] for i in kept],
        "dup_of": [],
    }
    for item in kept:
        original = first.setdefault(hashes[item.id], item.id)
        items["dup_of"].append("" if original == item.id else original)
    for column in catalogue.columns:
        items[column] = [i.metadata.get(column, "") for i in kept]
    return items
