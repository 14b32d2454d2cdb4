"""Search latency over real HTTP against gunicorn, beside model-only and
search-only times measured in the same run, and resident memory by worker count.

The index has 44k items of random unit vectors, whitened as the builder whitens
a catalogue that large (its size is what matters for search time and memory);
the queries are real catalogue photos when ../shared/data/fashion-dev is
present, else generated demo images.

Timings on a shared machine drift, so the model-only, search-only and HTTP
figures are taken in rounds (--repeats, default 3), each ratio within its round,
and the medians over rounds are reported.

    python benchmarks/bench_serve.py [--data DIR] [--models DIR] [--repeats N]
"""

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from embedding import whiten  # noqa: E402
from embedding.card import read_card  # noqa: E402
from embedding.model import Embedder, default_recipe  # noqa: E402
from embedding.preprocess import open_image  # noqa: E402
from index_builder import store  # noqa: E402
from index_builder.build import (  # noqa: E402
    DEFAULT_WHITEN_DIM,
    QUERY_EXPANSION,
    fit_whitening,
)

GUNICORN = Path(sys.executable).parent / "gunicorn"
STYLE_VALUES = {"articleType": ["Tshirts", "Shirts", "Casual Shoes", "Watches"]}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--data", type=Path, default=ROOT.parent / "shared/data/fashion-dev"
    )
    parser.add_argument("--models", type=Path, default=ROOT / "models")
    parser.add_argument("--model", help="model file name in --models (default: first)")
    parser.add_argument("--items", type=int, default=44_000)
    parser.add_argument("--queries", type=int, default=120)
    parser.add_argument("--c1-requests", type=int, default=120)
    parser.add_argument("--c8-requests", type=int, default=320)
    parser.add_argument(
        "--configs",
        default="2x2,2x1,1x2:spin",
        help="gunicorn set-ups to time, WORKERSxORT_THREADS comma separated (the "
        "service's default is 2 workers x all cores); a ':spin' suffix lets "
        "onnxruntime's idle threads busy-wait",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="rounds of model-only, search-only and HTTP timings; medians reported",
    )
    parser.add_argument("--memory-workers", default="1,2,4")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument(
        "--no-expand",
        action="store_true",
        help="serve the index without query expansion (one search per query)",
    )
    parser.add_argument("--out", type=Path, help="also write the figures as JSON")
    return parser.parse_args(argv)


def percentiles(ms: list[float]) -> dict:
    values = np.asarray(ms)
    return {
        "n": len(ms),
        "p50": round(float(np.percentile(values, 50)), 1),
        "p95": round(float(np.percentile(values, 95)), 1),
        "p99": round(float(np.percentile(values, 99)), 1),
    }


# ---- index and queries ---------------------------------------------------------


def query_images(data: Path, count: int, scratch: Path) -> tuple[Path, list[bytes]]:
    """Catalogue folder for /images and query photos from it."""
    images = sorted((data / "images").glob("*.jpg")) if data.exists() else []
    if not images:
        from demo.catalogue import generate

        data = scratch / "demo"
        generate(data, count=max(count, 100), seed=1)
        images = sorted((data / "images").glob("*.jpg"))
    step = max(1, len(images) // count)
    return data, [p.read_bytes() for p in images[::step][:count]]


def build_random_index(
    link: Path, model: Path, items: int, source: Path, expand: bool = True
) -> int:
    """A 44k-item index stored the way the builder stores one that large:
    model-sized random vectors, PCA-whitened to the builder's default
    dimension. Returns the stored dimension."""
    card = read_card(model)
    rng = np.random.default_rng(0)
    raw = rng.standard_normal((items, card.embedding_dim), dtype=np.float32)
    raw /= np.linalg.norm(raw, axis=1, keepdims=True)
    whitening, _ = fit_whitening(raw, DEFAULT_WHITEN_DIM)
    vectors = whitening.apply(raw)
    names = sorted(p.name for p in (source / "images").glob("*.jpg"))
    columns = {name: [""] * items for name in store.STYLE_COLUMNS}
    columns["articleType"] = [STYLE_VALUES["articleType"][i % 4] for i in range(items)]
    table = {
        "id": [str(i) for i in range(items)],
        "path": [f"images/{names[i % len(names)]}" for i in range(items)],
        "sha256": [""] * items,
        "dup_of": [""] * items,
        **columns,
    }
    folder = store.build_dir_for(link)
    manifest = {
        "backbone": card.backbone,
        "embedding_dim": int(vectors.shape[1]),
        "model_dim": card.embedding_dim,
        whiten.MANIFEST_KEY: whiten.save_with_index(whitening, folder),
        "model_card_sha256": card.sha256(),
        "model_file": model.name,
        "variant": card.variant,
        "recipe": default_recipe(card).to_dict(),
        "source": str(source),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
        # Costs as served: queries are expanded (one more exact search each).
        # Augmenting random vectors would change no timing, so it is left out.
        "augmentation": None,
        "query_expansion": dict(QUERY_EXPANSION) if expand else None,
        "note": "benchmark: random unit vectors, whitened",
    }
    store.write_build(folder, vectors, table, manifest, raw=raw)
    store.publish(folder, link)
    return int(vectors.shape[1])


# ---- in-process baselines ------------------------------------------------------


def model_only(model: Path, queries: list[bytes], threads: int) -> dict:
    embedder = Embedder(model, threads=threads)
    decode, embed = [], []
    for data in queries[:3]:  # warm-up
        embedder.embed(embedder.prepare(open_image(data))[None])
    for data in queries:
        t0 = time.perf_counter()
        batch = embedder.prepare(open_image(data))[None]
        t1 = time.perf_counter()
        embedder.embed(batch)
        t2 = time.perf_counter()
        decode.append((t1 - t0) * 1000)
        embed.append((t2 - t1) * 1000)
    median = statistics.median(embed)
    return {
        "threads": threads,
        "decode_ms_p50": round(statistics.median(decode), 2),
        "embed_ms_p50": round(median, 2),
        "images_per_s": round(1000 / (median + statistics.median(decode)), 1),
    }


def search_only(link: Path, dim: int, repeats: int = 60) -> dict:
    """Search as served (query expansion included, through the 16-bit first
    pass), without and with a filter, and the plain float32 scan of one query."""
    import faiss

    from app.catalogue import load_catalogue

    faiss.omp_set_num_threads(1)
    catalogue = load_catalogue(store.read_index(link, mmap=True))
    rng = np.random.default_rng(1)
    queries = rng.standard_normal((repeats, dim), dtype=np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    everything = catalogue.allowed_rows({})
    timings = {}
    for name, filters in (("unfiltered", {}), ("filtered", {"articleType": "Watches"})):
        catalogue.find(queries[:1], 5, catalogue.allowed_rows(filters), everything)
        ms = []
        for q in queries:
            t0 = time.perf_counter()
            catalogue.find(q[None], 5, catalogue.allowed_rows(filters), everything)
            ms.append((time.perf_counter() - t0) * 1000)
        timings[f"{name}_ms_p50"] = round(statistics.median(ms), 2)
    # One float32 IndexFlatL2 scan: a search cost this much per query before the
    # 16-bit first pass, and an expanded search twice as much.
    flat = catalogue.stored.index
    ms = []
    for q in queries:
        t0 = time.perf_counter()
        flat.search(q[None], 5)
        ms.append((time.perf_counter() - t0) * 1000)
    timings["float32_scan_ms_p50"] = round(statistics.median(ms), 2)
    return timings


# ---- gunicorn ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(link: Path, models: Path, workers: int, **env):
    """gunicorn with ``workers`` workers and the service's defaults, but for the
    FVS_* settings in ``env``."""
    port = free_port()
    environ = {
        **os.environ,
        "FVS_INDEX": str(link),
        "FVS_MODELS_DIR": str(models),
        "FVS_BIND": f"127.0.0.1:{port}",
        "FVS_WORKERS": str(workers),
        "FVS_LOG_LEVEL": "WARNING",
        **env,
    }
    process = subprocess.Popen(
        [str(GUNICORN), "-c", "gunicorn.conf.py"],
        cwd=ROOT,
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {process.returncode}")
        try:
            if requests.get(f"{url}/readyz", timeout=10).status_code == 200:
                return process, url
        except (requests.ConnectionError, requests.Timeout):
            pass
        time.sleep(0.3)
    process.kill()
    raise RuntimeError("gunicorn not ready after 120 s")


def stop(process) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def post(session, url: str, data: bytes) -> float:
    t0 = time.perf_counter()
    response = session.post(
        f"{url}/api/v1/search",
        files={"image": ("q.jpg", data, "image/jpeg")},
        timeout=60,
    )
    elapsed = (time.perf_counter() - t0) * 1000
    if response.status_code != 200:
        raise RuntimeError(f"search answered {response.status_code}: {response.text}")
    return elapsed


def run_load(url: str, queries: list[bytes], requests_total: int, concurrency: int):
    def worker(offset: int) -> list[float]:
        with requests.Session() as session:
            return [
                post(session, url, queries[i % len(queries)])
                for i in range(offset, requests_total, concurrency)
            ]

    with ThreadPoolExecutor(concurrency) as pool:
        t0 = time.perf_counter()
        latencies = [ms for part in pool.map(worker, range(concurrency)) for ms in part]
        wall = time.perf_counter() - t0
    return {**percentiles(latencies), "requests_per_s": round(requests_total / wall, 1)}


def process_memory(pid: int) -> dict:
    values = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, amount, *_ = line.split()
        values[name.rstrip(":")] = int(amount) / 1024  # MB
    return values


def tree_memory(master: int) -> dict:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    pids = [master, *map(int, children)]
    per = [process_memory(pid) for pid in pids]
    return {
        "processes": len(pids),
        "rss_mb": round(sum(p["Rss"] for p in per)),
        "pss_mb": round(sum(p["Pss"] for p in per)),
        "anonymous_mb": round(sum(p["Anonymous"] for p in per)),
        "worker_rss_mb": [round(p["Rss"]) for p in per[1:]],
    }


def one_round(args, link, models, model, queries, dim, cores) -> dict:
    """Model alone, search alone, then each gunicorn set-up over HTTP, one after
    the other, so that every ratio compares figures taken minutes apart."""
    figures = {
        "model_only": model_only(model, queries, cores),
        "model_only_1_thread": model_only(model, queries, 1),
        "search_only": search_only(link, dim),
        "http": {},
    }
    best = max(
        figures["model_only"]["images_per_s"],
        figures["model_only_1_thread"]["images_per_s"],
    )
    for config in args.configs.split(","):
        shape, _, spin = config.partition(":")
        workers, ort_threads = shape.split("x")
        process, url = start(
            link,
            models,
            int(workers),
            FVS_ORT_THREADS=ort_threads,
            FVS_ORT_SPINNING="1" if spin == "spin" else "0",
        )
        try:
            run_load(url, queries, 12 * int(workers), 4 * int(workers))  # warm-up
            c1 = run_load(url, queries, args.c1_requests, 1)
            c8 = run_load(url, queries, args.c8_requests, 8)
        finally:
            stop(process)
        c8["vs_model_only_images_per_s"] = round(c8["requests_per_s"] / best, 2)
        figures["http"][config] = {"c1": c1, "c8": c8}
    return figures


def medians(rounds: list[dict]) -> dict:
    """Per figure, the median over rounds (each ratio is taken within its round)."""

    def median_of(path):
        values = []
        for figures in rounds:
            for key in path:
                figures = figures[key]
            values.append(figures)
        return round(statistics.median(values), 2)

    out = {
        "model_only_images_per_s": median_of(("model_only", "images_per_s")),
        "model_only_1_thread_images_per_s": median_of(
            ("model_only_1_thread", "images_per_s")
        ),
        "search_only_unfiltered_ms": median_of(("search_only", "unfiltered_ms_p50")),
        "search_only_filtered_ms": median_of(("search_only", "filtered_ms_p50")),
        "float32_scan_ms": median_of(("search_only", "float32_scan_ms_p50")),
    }
    for config in rounds[0]["http"]:
        for level, figure in (
            ("c1", "p50"),
            ("c1", "p95"),
            ("c1", "p99"),
            ("c8", "requests_per_s"),
            ("c8", "vs_model_only_images_per_s"),
        ):
            key = f"http {config} {level} {figure}"
            out[key] = median_of(("http", config, level, figure))
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    models = args.models.resolve()
    model = models / (args.model or sorted(p.name for p in models.glob("*.onnx"))[0])
    card = read_card(model)
    cores = os.cpu_count() or 1
    report = {
        "model": card.backbone,
        "random_weights": card.random_weights,
        "load_average_at_start": os.getloadavg(),
    }

    with tempfile.TemporaryDirectory(prefix="bench-serve-") as scratch:
        scratch = Path(scratch)
        source, queries = query_images(args.data, args.queries, scratch)
        report["queries"] = f"{len(queries)} photos from {source}"
        link = scratch / "indexes" / "bench"
        t0 = time.perf_counter()
        dim = build_random_index(
            link, model, args.items, source, expand=not args.no_expand
        )
        report["index"] = {
            "items": args.items,
            "dim": dim,
            "model_dim": card.embedding_dim,
            "query_expansion": not args.no_expand,
            "vectors_mb": round(args.items * dim * 4 / 2**20),
            "sixteen_bit_copy_mb": round(args.items * dim * 2 / 2**20),
            "build_s": round(time.perf_counter() - t0, 1),
        }
        print(
            f"model {card.backbone} (random weights: {card.random_weights}); "
            f"{report['queries']}; index {report['index']}",
            flush=True,
        )

        rounds = []
        for number in range(1, args.repeats + 1):
            rounds.append(one_round(args, link, models, model, queries, dim, cores))
            print(f"round {number}/{args.repeats}: {rounds[-1]}", flush=True)
        report["rounds"] = rounds
        report["median"] = medians(rounds)
        print("median over rounds:", json.dumps(report["median"]), flush=True)

        if not args.skip_memory:
            report["memory"] = {}
            for mmap in ("1", "0"):
                for workers in map(int, args.memory_workers.split(",")):
                    process, url = start(link, models, workers, FVS_INDEX_MMAP=mmap)
                    try:
                        run_load(url, queries, 8 * workers, 2 * workers)
                        memory = tree_memory(process.pid)
                    finally:
                        stop(process)
                    key = f"mmap={mmap} workers={workers}"
                    report["memory"][key] = memory
                    print(f"memory {key}: {memory}", flush=True)

    report["load_average_at_end"] = os.getloadavg()
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
