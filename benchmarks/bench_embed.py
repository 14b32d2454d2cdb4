"""Embedding speed and the int8 variants' agreement with fp32, in one run.

Speed: images/s at batch 1 and 32 for torch eager fp32 (the baseline),
onnxruntime fp32 and each int8 variant, on the ResNet50 architecture with random
weights (its ImageNet weights are not reachable here; speed does not depend on
the weights' values), at 224x224 and 224x168. Every figure is a median over
repeats that interleave the engines, so a load from other processes hits them
alike; compare ratios within a run, not absolute figures across runs.

Quality: the real MobileNetV2 (models/mobilenet_v2.onnx), quantised the same
way, calibrated on catalogue images. On the dev catalogue: mean cosine between
the int8 and fp32 embeddings of each image, the overlap of their top-5
neighbours, and articleType precision@5 (leave-one-out; the query and its
byte-identical copies are not candidates).

    python -m benchmarks.bench_embed [--dev-data DIR] [--quality-images N]
"""

import argparse
import csv
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from embedding.card import read_card  # noqa: E402
from embedding.model import Embedder  # noqa: E402
from embedding.preprocess import ImageError, Recipe, load  # noqa: E402
from export.quantize import calibration_batch, quantize_model  # noqa: E402

THREADS = 2
SIZES = [(224, 224), (224, 168)]
BATCHES = [1, 32]
# name -> (quant format, calibration method)
INT8_VARIANTS = {
    "int8 qoperator": ("qoperator", "minmax"),
    "int8 qdq": ("qdq", "minmax"),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dev-data",
        type=Path,
        default=Path(
            os.environ.get("DEV_DATA", ROOT.parent / "shared/data/fashion-dev")
        ),
    )
    parser.add_argument("--quality-images", type=int, default=4000)
    parser.add_argument("--calibration-count", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--variants",
        default=",".join(INT8_VARIANTS),
        help="comma-separated int8 variants, each 'int8 FORMAT[ METHOD]'",
    )
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    return parser.parse_args(argv)


def variant_spec(name: str) -> tuple[str, str]:
    if name in INT8_VARIANTS:
        return INT8_VARIANTS[name]
    parts = name.split()
    return parts[1], parts[2] if len(parts) > 2 else "minmax"


# -- speed --------------------------------------------------------------------


def torch_runner(model):
    import torch

    def run(x):
        with torch.inference_mode():
            return model(torch.from_numpy(x)).numpy()

    return run


def ort_runner(path: Path):
    embedder = Embedder(path, threads=THREADS)
    return lambda x: embedder.session.run(["embedding"], {"pixels": x})[0]


def images_per_second(run, x: np.ndarray, min_seconds: float) -> float:
    run(x)  # warm-up at this shape
    count, started = 0, time.perf_counter()
    while True:
        run(x)
        count += len(x)
        elapsed = time.perf_counter() - started
        if elapsed >= min_seconds:
            return count / elapsed


def measure_speed(runners: dict, repeats: int) -> dict:
    rng = np.random.default_rng(0)
    samples = {}
    for _ in range(repeats):
        for size in SIZES:
            for batch in BATCHES:
                x = rng.standard_normal((batch, 3, *size)).astype(np.float32)
                for name, run in runners.items():
                    key = (name, batch, size)
                    seconds = 2.0 if name == "torch eager fp32" else 1.0
                    rate = images_per_second(run, x, seconds)
                    samples.setdefault(key, []).append(rate)
    return {key: statistics.median(v) for key, v in samples.items()}


def speed_section(args, workdir: Path, variants: list[str]) -> dict:
    import torch

    from export.onnx_export import build_model, export
    from export.weights import resolve

    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    weights = resolve("resnet50", None, random=True)
    export(weights, workdir)
    fp32 = workdir / "resnet50.onnx"
    model = build_model(weights)  # random too: speed does not depend on values

    card = read_card(fp32)
    calibration = calibration_batch(
        card, Recipe(224, 224), _existing(args.dev_data), 64
    )
    runners = {
        "torch eager fp32": torch_runner(model),
        "onnxruntime fp32": ort_runner(fp32),
    }
    for name in variants:
        fmt, method = variant_spec(name)
        path = workdir / f"resnet50-{fmt}-{method}.onnx"
        quantize_model(fp32, calibration, path, fmt, method)
        runners[name] = ort_runner(path)
    return measure_speed(runners, args.repeats)


def _existing(folder: Path) -> Path | None:
    return folder / "images" if (folder / "images").is_dir() else None


# -- quality ------------------------------------------------------------------


def read_article_types(styles: Path) -> dict[str, str]:
    """id -> articleType; product names may hold unquoted commas, so only the
    leading columns are split."""
    types = {}
    with open(styles, newline="", encoding="utf-8", errors="replace") as f:
        header = next(csv.reader([f.readline()]))
        column = header.index("articleType")
        for line in f:
            fields = line.rstrip("\n").split(",", len(header) - 1)
            if len(fields) > column and fields[column] not in ("", "NA"):
                types[fields[0]] = fields[column]
    return types


def dev_items(dev: Path, limit: int):
    """(paths, articleTypes, sha256s) of labelled images, evenly spread."""
    types = read_article_types(dev / "styles.csv")
    paths = sorted(p for p in (dev / "images").glob("*.jpg") if p.stem in types)
    step = max(1, len(paths) // limit)
    paths = paths[::step][:limit]
    hashes = [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]
    return paths, [types[p.stem] for p in paths], hashes


def neighbours(vectors: np.ndarray, hashes: list[str], k: int = 5) -> np.ndarray:
    """Top-k by cosine for every item, leaving out the item and its copies."""
    _, group = np.unique(hashes, return_inverse=True)
    result = np.empty((len(vectors), k), dtype=np.int64)
    for start in range(0, len(vectors), 512):
        sims = vectors[start : start + 512] @ vectors.T
        same = group[start : start + 512, None] == group[None, :]
        sims[same] = -np.inf
        top = np.argpartition(-sims, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1)
        result[start : start + 512] = np.take_along_axis(top, order, axis=1)
    return result


def precision_at_5(top: np.ndarray, labels: list[str]) -> float:
    labels = np.asarray(labels)
    return float((labels[top] == labels[:, None]).mean())


def embed_all(path: Path, batch: np.ndarray) -> np.ndarray:
    embedder = Embedder(path, threads=THREADS)
    return np.concatenate(
        [embedder.embed(batch[i : i + 32]) for i in range(0, len(batch), 32)]
    )


def quality_section(args, workdir: Path, variants: list[str]) -> dict:
    fp32 = ROOT / "models/mobilenet_v2.onnx"
    card = read_card(fp32)
    recipe = Recipe(*card.input_size)
    paths, labels, hashes = dev_items(args.dev_data, args.quality_images)
    inputs, kept = [], []
    for i, p in enumerate(paths):
        try:
            inputs.append(load(p, recipe, card.mean, card.std))
            kept.append(i)
        except ImageError:
            continue
    batch = np.stack(inputs)
    labels = [labels[i] for i in kept]
    hashes = [hashes[i] for i in kept]
    calibration = calibration_batch(
        card, recipe, args.dev_data / "images", args.calibration_count
    )

    reference = embed_all(fp32, batch)
    reference_top = neighbours(reference, hashes)
    figures = {
        "onnxruntime fp32": {
            "images": len(batch),
            "mean_cosine": 1.0,
            "top5_overlap": 1.0,
            "precision_at_5": precision_at_5(reference_top, labels),
        }
    }
    for name in variants:
        fmt, method = variant_spec(name)
        path = workdir / f"mobilenet_v2-{fmt}-{method}.onnx"
        quantize_model(fp32, calibration, path, fmt, method)
        vectors = embed_all(path, batch)
        top = neighbours(vectors, hashes)
        overlap = np.mean(
            [len(set(a) & set(b)) / 5 for a, b in zip(top, reference_top, strict=True)]
        )
        figures[name] = {
            "images": len(batch),
            "mean_cosine": float(np.mean(np.sum(vectors * reference, axis=1))),
            "top5_overlap": float(overlap),
            "precision_at_5": precision_at_5(top, labels),
        }
    return figures


# -- report -------------------------------------------------------------------


def print_speed(speed: dict) -> None:
    names = list(dict.fromkeys(key[0] for key in speed))
    print(
        f"\nspeed, ResNet50 architecture, {THREADS} threads, images/s "
        "(x onnxruntime fp32 at the same batch and size)"
    )
    header = "".join(f"{f'b{b} {h}x{w}':>22}" for h, w in SIZES for b in BATCHES)
    print(f"{'engine':<20}{header}")
    for name in names:
        cells = []
        for size in SIZES:
            for batch in BATCHES:
                rate = speed[(name, batch, size)]
                base = speed[("onnxruntime fp32", batch, size)]
                cells.append(f"{rate:8.1f} ({rate / base:4.2f}x)")
        print(f"{name:<20}" + "".join(f"{c:>22}" for c in cells))


def print_quality(quality: dict) -> None:
    count = next(iter(quality.values()))["images"]
    print(f"\nquality, MobileNetV2 (ImageNet weights), {count} dev images")
    print(f"{'variant':<20}{'mean cos':>10}{'top-5 overlap':>15}{'P@5 type':>10}")
    for name, f in quality.items():
        print(
            f"{name:<20}{f['mean_cosine']:>10.4f}{f['top5_overlap']:>15.3f}"
            f"{f['precision_at_5']:>10.4f}"
        )


def main(argv=None) -> int:
    import logging

    logging.basicConfig(level=logging.ERROR)
    import onnxruntime

    onnxruntime.set_default_logger_severity(3)
    args = parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    started = time.perf_counter()
    report = {}
    with tempfile.TemporaryDirectory() as workdir:
        workdir = Path(workdir)
        if not args.skip_quality:
            if not (args.dev_data / "styles.csv").is_file():
                print(f"no dev catalogue at {args.dev_data}: quality skipped")
            else:
                report["quality"] = quality_section(args, workdir, variants)
                print_quality(report["quality"])
        if not args.skip_speed:
            speed = speed_section(args, workdir, variants)
            print_speed(speed)
            report["speed"] = [
                {"engine": n, "batch": b, "size": list(s), "images_per_s": r}
                for (n, b, s), r in speed.items()
            ]
    print(f"\n({time.perf_counter() - started:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
