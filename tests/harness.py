"""Helpers for the load and fault tests: a small generated catalogue and its index,
real gunicorn on a free loopback port, and a bounded concurrent load generator."""

import csv
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from index_builder.store import STYLE_COLUMNS

ROOT = Path(__file__).resolve().parent.parent
COLOURS = {
    "Red": (200, 30, 30),
    "Blue": (30, 60, 200),
    "Green": (30, 150, 60),
    "Black": (20, 20, 20),
    "White": (245, 245, 245),
    "Yellow": (230, 200, 40),
}
ARTICLES = ("Tshirts", "Shoes", "Handbags", "Jeans")


def write_catalogue(folder: Path, count: int, seed: int = 0) -> Path:
    """``count`` drawn 60x80 items: images/<id>.jpg and styles.csv."""
    rng = np.random.default_rng(seed)
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(count):
        item_id = str(20000 + i)
        colour = list(COLOURS)[i % len(COLOURS)]
        article = ARTICLES[(i // len(COLOURS)) % len(ARTICLES)]
        img = Image.new("RGB", (60, 80), (255, 255, 255))
        pixels = np.asarray(img).copy()
        top, left = rng.integers(5, 25, size=2)
        pixels[top : top + 40, left : left + 25] = COLOURS[colour]
        noise = rng.integers(-12, 12, size=pixels.shape)
        pixels = np.clip(pixels.astype(int) + noise, 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(images / f"{item_id}.jpg", quality=90)
        rows.append((item_id, "Men", "Apparel", "Topwear", article, colour))
    with open(folder / "styles.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(("id", *STYLE_COLUMNS))
        for item_id, gender, master, sub, article, colour in rows:
            writer.writerow(
                (
                    item_id,
                    gender,
                    master,
                    sub,
                    article,
                    colour,
                    "Summer",
                    "2015",
                    "Casual",
                    f"Test {colour} {article} {item_id}",
                )
            )
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def children(pid: int) -> list[int]:
    """Direct child processes of ``pid`` (gunicorn's workers)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # the command name is in parentheses and may contain spaces
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry))
    return sorted(found)


class Server:
    """Real gunicorn running the service, for one test."""

    def __init__(
        self, index: Path, models: Path, log: Path, workers=2, threads=2, extra_env=None
    ):
        self.port = free_port()
        self.log_path = log
        env = {
            **os.environ,
            "FVS_BIND": f"127.0.0.1:{self.port}",
            "FVS_INDEX": str(index),
            "FVS_MODELS_DIR": str(models),
            "FVS_WORKERS": str(workers),
            "FVS_THREADS": str(threads),
            "FVS_RELOAD_SECONDS": "0.5",
            "FVS_ORT_THREADS": "1",
            "FVS_METRICS_DIR": str(log.parent / f"metrics-{self.port}"),
            "PYTHONUNBUFFERED": "1",
            **(extra_env or {}),
        }
        Path(env["FVS_METRICS_DIR"]).mkdir(exist_ok=True)
        self._log = open(log, "wb")  # noqa: SIM115 (closed by stop())
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-c",
                "gunicorn.conf.py",
                "app:create_app()",
            ],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def get(self, path: str, timeout=10) -> tuple[int, dict]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            body = resp.read()
        finally:
            conn.close()
        try:
            return resp.status, json.loads(body)
        except ValueError:
            return resp.status, {"raw": body[:200].decode(errors="replace")}

    def wait_ready(self, timeout=90.0, workers=None) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited early:\n{self.log()}")
            try:
                status, body = self.get("/readyz", timeout=2)
                if status == 200 and (
                    workers is None or len(self.workers()) == workers
                ):
                    return body
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"gunicorn not ready in {timeout} s:\n{self.log()}")

    def workers(self) -> list[int]:
        return children(self.proc.pid)

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


BOUNDARY = "loadBoundary0c1a"


def search_body(image: bytes, k: int = 5) -> tuple[bytes, str]:
    b = BOUNDARY.encode()
    body = (
        b"--"
        + b
        + b'\r\nContent-Disposition: form-data; name="k"\r\n\r\n'
        + str(k).encode()
        + b"\r\n--"
        + b
        + b'\r\nContent-Disposition: form-data; name="image"; filename="q.jpg"\r\n'
        b"Content-Type: image/jpeg\r\n\r\n" + image + b"\r\n--" + b + b"--\r\n"
    )
    return body, f"multipart/form-data; boundary={BOUNDARY}"


@dataclass
class Outcome:
    status: int  # 0 when the connection failed
    seconds: float
    body: bytes = b""
    error: str = ""
    retried: bool = False  # a closed keep-alive connection was retried once
    started: float = 0.0  # time.perf_counter() when the request was sent


@dataclass
class LoadReport:
    outcomes: list[Outcome] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, predicate) -> int:
        return sum(1 for o in self.outcomes if predicate(o))

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status != 200]

    def percentile_ms(self, q: float) -> float:
        times = sorted(o.seconds for o in self.outcomes)
        return 1000 * times[min(len(times) - 1, int(q * len(times)))]

    def summary(self) -> str:
        ok = self.count(lambda o: o.status == 200)
        return (
            f"{len(self.outcomes)} requests in {self.seconds:.1f} s, {ok} ok, "
            f"{len(self.failed)} failed, "
            f"{self.count(lambda o: o.retried)} retried on a fresh connection, "
            f"p50 {self.percentile_ms(0.5):.0f} ms, "
            f"p99 {self.percentile_ms(0.99):.0f} ms, "
            f"{len(self.outcomes) / self.seconds:.1f} req/s"
        )


def run_load(
    port: int,
    bodies: list[tuple[bytes, str]],
    total: int,
    concurrency: int,
    on_progress=None,
    path="/api/v1/search",
    retry=True,
) -> LoadReport:
    """POST ``total`` searches over ``concurrency`` keep-alive connections.

    ``on_progress(done)`` is called from a worker thread after each request, so a
    test can inject a fault at a given point of the run. With ``retry`` a request
    whose keep-alive connection was closed under it is sent once more on a fresh
    one, as HTTP clients do; without it, it counts as failed.
    """
    local = threading.local()
    counter = iter(range(total))
    lock = threading.Lock()
    done = [0]

    def one(i: int) -> Outcome:
        body, content_type = bodies[i % len(bodies)]
        started = time.perf_counter()
        outcome = send(body, content_type, started)
        outcome.started = started
        return outcome

    def send(body, content_type, started) -> Outcome:
        for attempt in range(2):
            conn = getattr(local, "conn", None)
            if conn is None:
                conn = local.conn = http.client.HTTPConnection(
                    "127.0.0.1", port, timeout=60
                )
            try:
                conn.request("POST", path, body, {"Content-Type": content_type})
                resp = conn.getresponse()
                data = resp.read()
                if resp.getheader("Connection", "").lower() == "close":
                    conn.close()
                    local.conn = None
                return Outcome(
                    resp.status,
                    time.perf_counter() - started,
                    data,
                    retried=attempt == 1,
                )
            except (http.client.RemoteDisconnected, ConnectionResetError) as e:
                # A keep-alive connection the server closed between requests is
                # retried once on a fresh connection (what any HTTP client does);
                # a second failure is a failed request.
                conn.close()
                local.conn = None
                if attempt == 1 or not retry:
                    return Outcome(0, time.perf_counter() - started, error=repr(e))
            except (OSError, http.client.HTTPException) as e:
                # refused, timed out, or the answer cut off midway
                conn.close()
                local.conn = None
                return Outcome(0, time.perf_counter() - started, error=repr(e))
        raise AssertionError("unreachable")

    def worker() -> list[Outcome]:
        mine = []
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            mine.append(one(i))
            with lock:
                done[0] += 1
                n = done[0]
            if on_progress:
                on_progress(n)
        if getattr(local, "conn", None):
            local.conn.close()
        return mine

    report = LoadReport()
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        futures = [pool.submit(worker) for _ in range(concurrency)]
        for f in futures:
            report.outcomes.extend(f.result())
    report.seconds = time.perf_counter() - started
    return report


def median(values) -> float:
    return statistics.median(values)
