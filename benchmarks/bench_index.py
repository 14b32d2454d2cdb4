"""Index builder throughput against a notebook-style baseline, in one run.

    python benchmarks/bench_index.py [--data ../shared/data/fashion-dev]

For each repeat, in turn on the same images:

- builder: ``build_index(..., full=True)`` in a child process (so that its peak
  resident memory is its own), images embedded per second of embedding;
- onnxruntime alone: the same model on one prepared batch, run again and again
  (the ceiling the builder's pipeline can reach);
- baseline: torch eager, one image at a time, decode -> squash to 224x224 ->
  normalise -> forward, as a notebook would.

Medians over the repeats are printed with the ratios. The model is ResNet50 with
random weights (ImageNet ResNet50 weights cannot be downloaded here); speed does
not depend on the weights' values.
"""

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--data", type=Path, default=ROOT / "../shared/data/fashion-dev"
    )
    parser.add_argument("--images", type=int, default=500, help="builder images")
    parser.add_argument("--baseline-images", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--child-build", nargs=3, metavar=("CATALOGUE", "MODEL", "OUT"))
    return parser.parse_args(argv)


def make_catalogue(data: Path, count: int, folder: Path) -> str:
    """A catalogue of ``count`` images: the dev images when present, else drawn."""
    images = folder / "images"
    images.mkdir(parents=True)
    source = data / "images"
    if source.is_dir():
        for path in sorted(source.iterdir())[:count]:
            os.symlink(path.resolve(), images / path.name)
        return f"{count} real images from {data}"
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(0)
    for n in range(count):
        img = Image.new("RGB", (60, 80), (255, 255, 255))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        box = sorted(rng.integers(5, 55, 2)), sorted(rng.integers(5, 75, 2))
        ImageDraw.Draw(img).rectangle(
            [box[0][0], box[1][0], box[0][1] + 4, box[1][1] + 4], fill=colour
        )
        img.save(images / f"{n}.jpg", quality=90)
    return f"{count} generated 60x80 images ({data} not found)"


def export_model(backbone: str, out: Path) -> Path:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "export",
            "--backbone",
            backbone,
            "--random-weights",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    return out / f"{backbone}.onnx"


def child_build(catalogue: str, model: str, out: str, batch_size: int) -> None:
    """Run in a child process: one full build, its figures as JSON on stdout."""
    import logging

    from index_builder.build import build_index

    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("index_builder.build").setLevel(logging.ERROR)  # random weights
    started = time.perf_counter()
    result = build_index(
        catalogue, model, Path(out), batch_size=batch_size, full=True, progress=False
    )
    manifest = result.manifest
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "embedded": manifest["embedded"],
                "embed_seconds": manifest["embed_seconds"],
                "wall_seconds": time.perf_counter() - started,
                "peak_rss_mb": peak_kb / 1024,
            }
        )
    )


def run_builder(catalogue: Path, model: Path, out: Path, batch_size: int) -> dict:
    done = subprocess.run(
        [
            sys.executable,
            __file__,
            "--batch-size",
            str(batch_size),
            "--child-build",
            str(catalogue),
            str(model),
            str(out),
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    figures["img_s"] = figures["embedded"] / figures["embed_seconds"]
    figures["wall_img_s"] = figures["embedded"] / figures["wall_seconds"]
    return figures


def run_onnxruntime_alone(model: Path, batch_size: int, batches: int = 4) -> float:
    from embedding.model import Embedder

    embedder = Embedder(model)
    rng = np.random.default_rng(0)
    batch = rng.standard_normal((batch_size, 3, 224, 224), dtype=np.float32)
    embedder.embed(batch[:2])  # warm-up
    started = time.perf_counter()
    for _ in range(batches):
        embedder.embed(batch)
    return batches * batch_size / (time.perf_counter() - started)


def load_baseline_model(backbone: str):
    import torch

    from export.networks import build

    torch.manual_seed(0)
    return build(backbone)


def run_baseline(model, paths: list[Path], threads: int) -> float:
    """Notebook style: one image at a time through torch eager."""
    import torch
    from PIL import Image

    torch.set_num_threads(threads)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    started = time.perf_counter()
    with torch.no_grad():
        for path in paths:
            img = Image.open(path).convert("RGB").resize((224, 224))
            x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0)
            x = (x.permute(2, 0, 1) - mean) / std
            model(x.unsqueeze(0)).numpy()
    return len(paths) / (time.perf_counter() - started)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child_build:
        child_build(*args.child_build, args.batch_size)
        return 0

    work = Path(tempfile.mkdtemp(prefix="bench-index-"))
    try:
        print(f"exporting {args.backbone} with random weights ...", flush=True)
        model = export_model(args.backbone, work / "models")
        catalogue = work / "catalogue"
        described = make_catalogue(args.data, args.images, catalogue)
        paths = sorted((catalogue / "images").iterdir())[: args.baseline_images]
        baseline_model = load_baseline_model(args.backbone)
        cores = os.cpu_count() or 1
        run_baseline(baseline_model, paths[:3], cores)  # warm-up

        rows = []
        for repeat in range(args.repeats):
            built = run_builder(
                catalogue, model, work / "indexes" / "b", args.batch_size
            )
            alone = run_onnxruntime_alone(model, args.batch_size)
            # torch's default (all cores) and one thread: on a busy machine its
            # OpenMP threads can be slower than one; the faster one is the baseline.
            default = run_baseline(baseline_model, paths, cores)
            single = run_baseline(baseline_model, paths, 1)
            rows.append((built, alone, max(default, single)))
            print(
                f"repeat {repeat + 1}: builder {built['img_s']:.1f} img/s "
                f"(whole build {built['wall_img_s']:.1f}), onnxruntime alone "
                f"{alone:.1f} img/s, baseline {default:.2f} img/s with {cores} "
                f"threads, {single:.2f} with 1",
                flush=True,
            )
        report(args, described, rows)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def report(args, described, rows) -> None:
    builder = statistics.median(r[0]["img_s"] for r in rows)
    whole = statistics.median(r[0]["wall_img_s"] for r in rows)
    alone = statistics.median(r[1] for r in rows)
    baseline = statistics.median(r[2] for r in rows)
    ratio = statistics.median(r[0]["img_s"] / r[2] for r in rows)
    peak = max(r[0]["peak_rss_mb"] for r in rows)
    print()
    print(
        f"{args.backbone} fp32 224x224, load average {os.getloadavg()[0]:.1f} on "
        f"{os.cpu_count()} cores, with RANDOM weights (ImageNet ResNet50 weights "
        "are not reachable here; speed does not depend on the weights)"
    )
    print(f"images: {described}; baseline on the first {args.baseline_images}")
    print(f"medians over {args.repeats} repeats, batch size {args.batch_size}:")
    print(f"  builder (embedding phase)   {builder:7.1f} img/s")
    print(f"  builder (whole build)       {whole:7.1f} img/s")
    print(f"  onnxruntime alone           {alone:7.1f} img/s")
    print(f"  baseline (torch eager, 1x1) {baseline:7.2f} img/s (faster thread count)")
    print(f"  builder / baseline          {ratio:7.2f}x")
    print(f"  builder / onnxruntime alone {builder / alone:7.2f}")
    print(f"  builder peak RSS            {peak:7.0f} MB ({args.images} images)")


if __name__ == "__main__":
    sys.exit(main())
