"""The real thing: gunicorn with several workers over loopback."""

import os
import re

import pytest
import requests
from service_helpers import start_gunicorn as start
from service_helpers import stop_gunicorn as stop
from service_helpers import wait_ready

pytestmark = pytest.mark.slow


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
    # By default each worker's onnxruntime may use every core, idle threads asleep.
    cores = os.cpu_count()
    assert (
        f"2 workers x 2 threads, {cores} onnxruntime threads each (idle ones sleep)"
        in text
    )
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
