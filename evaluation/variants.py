"""Which embedding pipeline finds the best neighbours, at what cost, in one run.

    python -m evaluation.variants DEV_DIR [--model models/mobilenet_v2.onnx]

Embeds the catalogue with each input recipe (squash, pad to square, native 3:4,
crop to content, mirror averaging), pools the same feature maps by average and
by GeM, tries PCA-whitening fitted on the catalogue, database-side augmentation,
query expansion and duplicate collapse, scores all with the leave-one-out
evaluation and times each pipeline on the same images in the same run (median
of repeats, so other load on the machine cancels out in the ratios). Writes
``variants.json`` and ``variants.md`` in ``--out``.
"""

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

from embedding import whiten
from embedding.card import read_card
from embedding.model import Embedder
from embedding.preprocess import Recipe, load

from .augmented import AugmentedSearch
from .catalogue import read_catalogue
from .embed_cache import cache_key, cached_embeddings, embed_all, gem, unit
from .evaluate import evaluate
from .metrics import group_ids

log = logging.getLogger("evaluation.variants")

WHITEN_DIMS = (256, 512, 768)
TIMING_IMAGES = 128
TIMING_REPEATS = 5
COST_LIMIT = 1.3
TIE = 0.002  # P@5 differences this small go to the cheaper variant
NAIVE = "squash 224x224"
DEFAULT = "pad 256x192 (3:4)"  # the recipe indexes are built with
CROPPED = "crop + pad 256x192 (3:4)"
FLIPPED = "pad 224x168 (3:4)"  # the recipe also embedded mirrored
RECIPES = {
    NAIVE: Recipe(224, 224, "squash"),
    "pad 224x224": Recipe(224, 224, "pad"),
    FLIPPED: Recipe(224, 168, "pad"),
    # The same pixel count as 224x224, in the catalogue's 3:4 shape.
    "pad 256x192 (3:4)": Recipe(256, 192, "pad"),
    CROPPED: Recipe(256, 192, "pad", crop=True),
}
WHITEN_POWER = whiten.DEFAULT_POWER
STRONG_POWER = 0.25
NAMES = {DEFAULT: "native 3:4 input 256x192"}
DEFAULT_WHITEN_DIM = 512  # what indexes are built with
# Database-side augmentation (k neighbours, weight exponent) and query
# expansion (answers added to the query, weight exponent) tried on top of it.
AUGMENTATIONS = [
    ("DBA k=5 a=3", 5, 3.0, 0, 3.0),
    ("DBA k=10 a=2", 10, 2.0, 0, 3.0),
    ("query expansion 2", 0, 1.0, 2, 3.0),
    ("DBA k=10 a=2 + query expansion 2", 10, 2.0, 2, 3.0),
]


@dataclass
class Variant:
    name: str
    recipe: str
    pooling: str = "avg"
    flip: bool = False
    whiten_dim: int = 0
    collapse: bool = False
    expand: int = 0  # query expansion: one more catalogue search per query
    default_ready: bool = True  # runs with the exported default graph
    scores: dict = field(default_factory=dict)
    cost: float = 0.0  # embedding time relative to the naive baseline


def time_pipelines(model_path, features_path, paths, whitening) -> dict[str, float]:
    """Seconds per image of each pipeline (file -> final vector), median of
    interleaved repeats on the same images."""
    embedders = {name: Embedder(model_path, recipe) for name, recipe in RECIPES.items()}
    embedders["flip"] = Embedder(model_path, Recipe(224, 168, "pad", flip=True))
    features = ort.InferenceSession(
        str(features_path), providers=["CPUExecutionProvider"]
    )
    card = embedders["flip"].card

    def run_gem():
        recipe = RECIPES[FLIPPED]
        batch = np.stack([load(p, recipe, card.mean, card.std) for p in paths])
        return gem(features.run(["features"], {"pixels": batch})[0])

    def run_whiten():
        e = embedders[FLIPPED]
        return whitening.apply(e.embed(np.stack([e.load(p) for p in paths])))

    jobs = {
        name: (lambda e=e: e.embed(np.stack([e.load(p) for p in paths])))
        for name, e in embedders.items()
    }
    jobs["gem"] = run_gem
    jobs["whiten"] = run_whiten
    times: dict[str, list] = {name: [] for name in jobs}
    for job in jobs.values():
        job()  # warm-up
    names = list(jobs)
    for repeat in range(TIMING_REPEATS):
        # A different job goes first in each round, so slow spells hit all alike.
        for name in names[repeat % len(names) :] + names[: repeat % len(names)]:
            job = jobs[name]
            started = time.perf_counter()
            job()
            times[name].append((time.perf_counter() - started) / len(paths))
    return {name: statistics.median(t) for name, t in times.items()}


def run(dev_dir: Path, model_path: Path, out: Path) -> list[Variant]:
    out.mkdir(parents=True, exist_ok=True)
    cache = out / "cache"
    cache.mkdir(exist_ok=True)
    card = read_card(model_path)
    items = read_catalogue(dev_dir)
    paths = [dev_dir / p for p in items["path"]]
    log.info("%d images, backbone %s", len(paths), card.backbone)

    with tempfile.TemporaryDirectory() as tmp:
        from .features_model import export_with_features

        features_path = export_with_features(model_path, Path(tmp) / "features.onnx")
        check_features_model(model_path, features_path)
        session = ort.InferenceSession(
            str(features_path), providers=["CPUExecutionProvider"]
        )
        vectors = {}
        for name, recipe in RECIPES.items():
            key = cache_key(card, recipe, name == FLIPPED, len(paths))
            vectors[name] = cached_embeddings(
                cache,
                key,
                lambda r=recipe, n=name: embed_all(
                    session, paths, r, card, n == FLIPPED
                ),
            )
        base = vectors[FLIPPED]
        flip_avg = unit(base["avg"] + base["avg_mirror"])
        sources = {name: v["avg"] for name, v in vectors.items()}
        sources["flip"] = flip_avg
        variants, embeddings = define_variants(vectors, flip_avg)
        for v in variants:
            score(v, embeddings[v.name], items)
        # PCA-whitening (with power normalisation) on the default recipe, with
        # and without cropping.
        top = [
            v
            for v in variants
            if v.recipe in (DEFAULT, CROPPED) and v.pooling == "avg" and not v.collapse
        ]
        whitenings = {}
        for v in top:
            key = "flip" if v.flip else v.recipe
            for dim in [d for d in WHITEN_DIMS if d <= min(sources[key].shape)] or [8]:
                w = whiten.fit(sources[key], dim, power=WHITEN_POWER)
                name = f"{v.name} + PCA-whitening to {dim}"
                whitened = Variant(name, v.recipe, flip=v.flip, whiten_dim=dim)
                variants.append(whitened)
                embeddings[name] = w.apply(sources[key])
                whitenings[name] = w
                score(whitened, embeddings[name], items)
        # Without power normalisation, for comparison.
        name = f"{NAMES[DEFAULT]} + PCA-whitening to {DEFAULT_WHITEN_DIM}, no power"
        v = Variant(name, DEFAULT, whiten_dim=DEFAULT_WHITEN_DIM)
        variants.append(v)
        w = whiten.fit(sources[DEFAULT], DEFAULT_WHITEN_DIM)
        score(v, w.apply(sources[DEFAULT]), items)
        for dim in (DEFAULT_WHITEN_DIM, max(WHITEN_DIMS)):
            name = f"{NAMES[DEFAULT]} + PCA-whitening to {dim}"
            variants += augmented_variants(name, embeddings[name], items, dim)
        # A stronger power normalisation (fourth root), alone and with both.
        dim = max(WHITEN_DIMS)
        name = f"{NAMES[DEFAULT]} + PCA-whitening to {dim}, power {STRONG_POWER}"
        v = Variant(name, DEFAULT, whiten_dim=dim)
        strong = whiten.fit(sources[DEFAULT], dim, power=STRONG_POWER)
        score(v, strong.apply(sources[DEFAULT]), items)
        variants.append(v)
        variants += augmented_variants(
            name, strong.apply(sources[DEFAULT]), items, dim, AUGMENTATIONS[-1:]
        )
        whitened = [v for v in variants if v.whiten_dim and v.name in embeddings]
        best = max(whitened, key=lambda v: v.scores["p@5"])
        v = Variant(
            f"{best.name} + duplicate collapse",
            best.recipe,
            flip=best.flip,
            whiten_dim=best.whiten_dim,
            collapse=True,
        )
        variants.append(v)
        score(v, embeddings[best.name], items)

        timing_paths = paths[:: max(1, len(paths) // TIMING_IMAGES)][:TIMING_IMAGES]
        default = f"{NAMES[DEFAULT]} + PCA-whitening to {DEFAULT_WHITEN_DIM}"
        seconds = time_pipelines(
            model_path, features_path, timing_paths, whitenings[default]
        )
        seconds["expand"] = time_search(embeddings[default])
    assign_costs(variants, seconds)
    write_results(out, variants, seconds, card, len(paths), items)
    return variants


def augmented_variants(
    base: str, vectors, items, dim, augmentations=AUGMENTATIONS
) -> list[Variant]:
    """DBA and query expansion on top of a whitened pipeline, scored honestly
    (see ``evaluation.augmented``)."""
    groups = group_ids(items["sha256"])
    out = []
    for label, k, alpha, expand, expand_alpha in augmentations:
        v = Variant(f"{base} + {label}", DEFAULT, whiten_dim=dim, expand=expand)
        search = AugmentedSearch(vectors, k, alpha, groups, expand, expand_alpha)
        score(v, vectors, items, search)
        out.append(v)
    return out


def time_search(catalogue: np.ndarray) -> float:
    """Seconds per query of one exact search of the whole catalogue (what query
    expansion adds), median of repeats."""
    queries = catalogue[:TIMING_IMAGES]
    times = []
    for _ in range(TIMING_REPEATS):
        started = time.perf_counter()
        for q in queries:
            np.argpartition(-(catalogue @ q), 5)[:5]
        times.append((time.perf_counter() - started) / len(queries))
    return statistics.median(times)


def score(v: Variant, vectors: np.ndarray, items: dict, search=None) -> None:
    scores = evaluate(vectors, items, collapse=v.collapse, search=search)
    v.scores = scores["overall"]["articleType"]
    log.info("%-50s articleType P@5 %.4f", v.name, v.scores["p@5"])


def check_features_model(model_path: Path, features_path: Path) -> None:
    """The features export must embed exactly like the default model."""
    x = np.random.default_rng(0).standard_normal((2, 3, 224, 168)).astype(np.float32)
    default = Embedder(model_path).session.run(["embedding"], {"pixels": x})[0]
    session = ort.InferenceSession(
        str(features_path), providers=["CPUExecutionProvider"]
    )
    ours = session.run(["embedding"], {"pixels": x})[0]
    worst = float(np.abs(default - ours).max())
    if worst > 1e-4:
        raise RuntimeError(f"features export differs from {model_path} by {worst:.1e}")


def define_variants(vectors, flip_avg):
    squash, three_four = vectors[NAIVE], vectors[FLIPPED]
    big = vectors["pad 256x192 (3:4)"]
    table = [
        (Variant("naive: squash 224x224, average pool", NAIVE), squash["avg"]),
        (
            Variant("pad to square 224x224 (border colour)", "pad 224x224"),
            vectors["pad 224x224"]["avg"],
        ),
        (Variant("native 3:4 input 224x168", FLIPPED), three_four["avg"]),
        (Variant(NAMES[DEFAULT], DEFAULT), big["avg"]),
        (
            Variant("crop to content + 3:4 input 256x192", CROPPED),
            vectors[CROPPED]["avg"],
        ),
        (
            Variant("3:4 224x168 + horizontal-flip averaging", FLIPPED, flip=True),
            flip_avg,
        ),
        (Variant("naive + duplicate collapse", NAIVE, collapse=True), squash["avg"]),
        (
            Variant("naive + GeM pooling (p=3)", NAIVE, "gem", default_ready=False),
            squash["gem"],
        ),
        (
            Variant(
                "3:4 224x168 + GeM pooling (p=3)", FLIPPED, "gem", default_ready=False
            ),
            three_four["gem"],
        ),
        (
            Variant(
                "3:4 256x192 + GeM pooling (p=3)",
                "pad 256x192 (3:4)",
                "gem",
                default_ready=False,
            ),
            big["gem"],
        ),
    ]
    return [v for v, _ in table], {v.name: x for v, x in table}


def assign_costs(variants, seconds) -> None:
    """Each variant's time per image over the naive pipeline's. GeM's extra
    pooling and whitening's matrix product are timed on the 224x168 recipe and
    added to the others' as the same extra time."""
    base = seconds[NAIVE]
    extra = {
        "gem": seconds["gem"] - seconds[FLIPPED],
        "whiten": seconds["whiten"] - seconds[FLIPPED],
    }
    for v in variants:
        total = seconds["flip"] if v.flip else seconds[v.recipe]
        if v.pooling == "gem":
            total += extra["gem"]
        if v.whiten_dim:
            total += extra["whiten"]
        if v.expand:
            total += seconds["expand"]
        v.cost = round(total / base, 3)


def winner(variants) -> Variant:
    eligible = [v for v in variants if v.default_ready and v.cost <= COST_LIMIT]
    top = max(v.scores["p@5"] for v in eligible)
    close = [v for v in eligible if v.scores["p@5"] >= top - TIE]
    return min(close, key=lambda v: (v.cost, -v.scores["p@5"]))


def write_results(out, variants, seconds, card, count, items) -> None:
    naive = variants[0]
    best = winner(variants)
    rows = [
        {
            "variant": v.name,
            "articleType_p@5": v.scores["p@5"],
            "gain_vs_naive": round(v.scores["p@5"] - naive.scores["p@5"], 4),
            "articleType_p@1": v.scores["p@1"],
            "articleType_map@10": v.scores["map@10"],
            "cost_vs_naive": v.cost,
            "default_ready": v.default_ready,
        }
        for v in variants
    ]
    report = {
        "backbone": card.backbone,
        "weights_source": card.weights_source,
        "images": count,
        "queries": variants[0].scores["queries"],
        "baseline_img_per_s": round(1.0 / seconds[NAIVE], 1),
        "timing": {
            "images": TIMING_IMAGES,
            "repeats": TIMING_REPEATS,
            "seconds_per_image": {k: round(v, 5) for k, v in seconds.items()},
        },
        "variants": rows,
        "winner": best.name,
        "cost_limit": COST_LIMIT,
    }
    (out / "variants.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        f"Backbone {card.backbone} ({card.weights_source} weights), {count} images, "
        f"{report['queries']} queries; naive pipeline "
        f"{report['baseline_img_per_s']} img/s in this run.",
        "",
        "| variant | articleType P@5 | vs naive | P@1 | mAP@10 | embedding cost |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        mark = " **(best within 1.3x)**" if r["variant"] == best.name else ""
        note = "" if r["default_ready"] else " (needs a features graph)"
        lines.append(
            f"| {r['variant']}{mark}{note} | {r['articleType_p@5']:.4f} | "
            f"{r['gain_vs_naive']:+.4f} | {r['articleType_p@1']:.4f} | "
            f"{r['articleType_map@10']:.4f} | {r['cost_vs_naive']:.2f}x |"
        )
    (out / "variants.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evaluation.variants")
    parser.add_argument("dev_dir", type=Path, help="labelled catalogue folder")
    parser.add_argument("--model", type=Path, default=Path("models/mobilenet_v2.onnx"))
    parser.add_argument("--out", type=Path, default=Path("reports/variants"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    run(args.dev_dir, args.model, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
