"""The real thing: gunicorn with several workers over loopback."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
GUNICORN = Path(sys.executable).parent / "gunicorn"
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(index, models_dir, tmp_path, **env):
    port = free_port()
    environ = {
        **os.environ,
        "FVS_INDEX": str(index),
        "FVS_MODELS_DIR": str(models_dir),
        "FVS_BIND": f"127.0.0.1:{port}",
        "FVS_WORKERS": "2",
        "FVS_THREADS": "2",
        "FVS_METRICS_DIR": str(tmp_path / "metrics"),
        **env,
    }
    log = tmp_path / "gunicorn.log"
    with open(log, "w") as out:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            [str(GUNICORN), "-c", "gunicorn.conf.py"],
            cwd=ROOT,
            env=environ,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return process, f"http://127.0.0.1:{port}", log


def wait_ready(process, url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"gunicorn exited with {process.returncode}")
        try:
            if requests.get(f"{url}/readyz", timeout=10).status_code == 200:
                return
        except (requests.ConnectionError, requests.Timeout):
            pass
        time.sleep(0.2)
    raise AssertionError(f"gunicorn not ready after {timeout} s")


def stop(process) -> int:
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
        raise


def test_gunicorn_serves_a_search_and_counts_over_all_workers(
    built_index, random_model_dir, catalogue_dir, tmp_path
):
    process, url, log = start(built_index, random_model_dir, tmp_path)
    try:
        wait_ready(process, url)
        photo = (catalogue_dir / "images" / "10007.jpg").read_bytes()
        with requests.Session() as session:
            bodies = [
                session.post(
                    f"{url}/api/v1/search",
                    files={"image": ("p.jpg", photo, "image/jpeg")},
                    data={"k": "5"},
                    timeout=30,
                )
                for _ in range(6)
            ]
        metrics = requests.get(f"{url}/metrics", timeout=10).text
    finally:
        code = stop(process)

    assert [b.status_code for b in bodies] == [200] * 6
    results = bodies[0].json()["queries"][0]["results"]
    assert [r["rank"] for r in results] == [1, 2, 3, 4, 5]
    assert results[0]["id"] == "10007"
    # Summed over both workers, whichever answered.
    assert re.search(
        r'fvs_requests_total\{endpoint="/api/v1/search",method="POST",'
        r'status="200"\} 6\.0',
        metrics,
    )
    assert code == 0
    text = log.read_text()
    assert "2 workers x 2 threads, 1 onnxruntime threads each" in text
    assert "DEMO catalogue" in text


def test_gunicorn_refuses_to_start_without_the_model(built_index, tmp_path):
    process, _, log = start(built_index, tmp_path / "no-models", tmp_path)
    try:
        code = process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert code != 0
    assert "cannot start: model file" in log.read_text()
