"""A real browser through the real upload form: Debian's Chromium, headless,
driven by Playwright, against gunicorn on loopback."""

from pathlib import Path

import pytest
from service_helpers import start_gunicorn, stop_gunicorn, wait_ready

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ALL_RESULTS_LOADED = """() => {
    const images = [...document.querySelectorAll('#results img')];
    return images.length === 5 && images.every(i => i.complete && i.naturalWidth > 0);
}"""
DROP_FILE = """async ([bytes]) => {
    const file = new File([new Uint8Array(bytes)], 'photo.jpg', {type: 'image/jpeg'});
    const data = new DataTransfer();
    data.items.add(file);
    const drop = document.getElementById('drop');
    drop.dispatchEvent(new DragEvent('drop', {dataTransfer: data, bubbles: true}));
}"""

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="Debian's chromium is not installed (apt-get install chromium; "
        ".ci/run does it)",
    ),
]


@pytest.fixture(scope="module")
def server(built_index, random_model_dir, tmp_path_factory):
    process, url, _ = start_gunicorn(
        built_index, random_model_dir, tmp_path_factory.mktemp("browser")
    )
    try:
        wait_ready(process, url)
        yield url
    finally:
        stop_gunicorn(process)


@pytest.fixture(scope="module")
def page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=CHROMIUM_ARGS,  # launch() gives it a fresh empty profile
            timeout=60_000,
        )
        try:
            page = browser.new_page()
            page.set_default_timeout(30_000)
            yield page
        finally:
            browser.close()


def test_an_upload_through_the_form_shows_five_loaded_result_images(
    server, page, catalogue_dir
):
    page.goto(f"{server}/")
    page.set_input_files("#image", str(catalogue_dir / "images" / "10007.jpg"))
    page.click("#search-button")

    page.wait_for_function(ALL_RESULTS_LOADED)
    sources = page.eval_on_selector_all(
        "#results img", "images => images.map(i => i.getAttribute('src'))"
    )
    assert sources[0] == "/images/10007"
    assert len(set(sources)) == 5
    assert page.eval_on_selector("#query-image", "i => i.naturalWidth") > 0
    assert page.locator("text=more like this").count() == 5


def test_a_photo_dropped_on_the_form_is_searched(server, page, catalogue_dir):
    page.goto(f"{server}/")
    photo = (catalogue_dir / "images" / "10012.jpg").read_bytes()

    with page.expect_navigation():
        page.evaluate(DROP_FILE, [list(photo)])

    page.wait_for_function(ALL_RESULTS_LOADED)
    first = page.eval_on_selector("#results img", "i => i.getAttribute('src')")
    assert first == "/images/10012"


def test_a_bad_upload_shows_the_message_on_the_form(server, page, tmp_path):
    bad = tmp_path / "notes.jpg"
    bad.write_text("not a photo")
    page.goto(f"{server}/")
    page.set_input_files("#image", str(bad))
    page.click("#search-button")

    message = page.locator("#message").inner_text()
    assert message.startswith("not a supported image (use JPEG, PNG")
