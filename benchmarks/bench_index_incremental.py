"""Adding images to a large live index: how many are embedded, time and memory.

    python benchmarks/bench_index_incremental.py MODEL [--items 44000] [--new 100]

Makes a catalogue of ``--items`` distinct image files (one real picture with a
different trailer each, so every file has its own sha256), publishes a live index
for it with random unit vectors as if the model had built it, adds ``--new`` new
images, and runs ``python -m index_builder`` on it in a child process. Prints the
builder's summary line, its wall time and its peak resident memory.
"""

import argparse
import hashlib
import io
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from embedding.model import Embedder  # noqa: E402
from index_builder import store  # noqa: E402


def picture(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (80, 60, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--items", type=int, default=44_000)
    parser.add_argument("--new", type=int, default=100)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-incremental-"))
    try:
        images = work / "shop" / "images"
        images.mkdir(parents=True)
        base = picture(0)
        shas = []
        for n in range(args.items):
            data = base + n.to_bytes(4, "big")  # decoders ignore the trailer
            (images / f"{n}.jpg").write_bytes(data)
            shas.append(hashlib.sha256(data).hexdigest())

        embedder = Embedder(args.model)
        rng = np.random.default_rng(0)
        vectors = rng.standard_normal((args.items, embedder.dim), dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        ids = [str(n) for n in range(args.items)]
        items = {
            "id": ids,
            "path": [f"images/{i}.jpg" for i in ids],
            "sha256": shas,
            "dup_of": [""] * args.items,
        }
        manifest = {
            "model_card_sha256": embedder.card.sha256(),
            "recipe": embedder.recipe.to_dict(),
            "backbone": embedder.card.backbone,
        }
        link = work / "indexes" / "shop"
        link.parent.mkdir()
        folder = store.build_dir_for(link)
        store.write_build(folder, vectors, items, manifest)
        store.publish(folder, link)
        del vectors, embedder

        for n in range(args.new):
            (images / f"new{n}.jpg").write_bytes(picture(n + 1))
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "index_builder", str(work / "shop")]
            + ["--out", str(link), "--model", str(args.model), "--no-progress"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        seconds = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(done.stderr.strip().splitlines()[-1])
        print(
            f"{args.items} items + {args.new} new with {args.model.name}: "
            f"wall {seconds:.1f} s, builder peak RSS {peak:.0f} MB"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
