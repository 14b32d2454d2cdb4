"""The upload form, its results page and "more like this"."""

import re

from service_fixtures import upload


def page(response) -> str:
    return response.get_data(as_text=True)


def result_ids(html: str) -> list[str]:
    results = html.split('id="results"', 1)[1]
    return re.findall(r'<img src="/images/([^"]+)" alt=', results)


def test_the_form_offers_upload_drop_and_the_indexs_filter_values(client, styles):
    html = page(client.get("/"))

    assert 'type="file" name="image"' in html
    assert 'id="drop"' in html and '"drop"' in html
    for name in ("gender", "masterCategory", "articleType", "baseColour"):
        values = sorted({row[name] for row in styles})
        options = re.search(rf'<select name="{name}">(.*?)</select>', html, re.S)
        offered = re.findall(r'<option value="([^"]*)"', options.group(1))
        assert offered == ["", *values]


def test_the_form_says_the_catalogue_is_a_demo(client):
    assert 'id="demo-notice"' in page(client.get("/"))


def test_an_upload_shows_the_query_and_five_results(client, catalogue_dir):
    photo = (catalogue_dir / "images" / "10007.jpg").read_bytes()
    response = client.post(
        "/search", data={"image": upload(photo)}, content_type="multipart/form-data"
    )

    html = page(response)
    assert response.status_code == 200
    assert 'src="data:image/jpeg;base64,' in html
    ids = result_ids(html)
    assert len(ids) == 5
    assert ids[0] == "10007"
    assert html.count("more like this</a>") == 5
    assert f'href="/items/{ids[1]}"' in html
    assert len(re.findall(r"distance \d\.\d{3}", html)) == 5


def test_a_bad_upload_comes_back_to_the_form_with_a_message(client):
    response = client.post(
        "/search",
        data={"image": upload(b"<svg/>", "x.svg")},
        content_type="multipart/form-data",
    )

    html = page(response)
    assert response.status_code == 415
    assert 'id="message">not a supported image (use JPEG, PNG' in html
    assert 'type="file" name="image"' in html
    assert "Traceback" not in html


def test_an_upload_over_the_limit_comes_back_to_the_form(client):
    response = client.post(
        "/search",
        data={"image": upload(bytes(600 * 1024))},
        content_type="multipart/form-data",
    )

    assert response.status_code == 413
    assert "the upload is larger than the 0.5 MB limit" in page(response)


def test_an_empty_form_submission_asks_for_a_photo(client):
    response = client.post("/search", data={}, content_type="multipart/form-data")

    assert response.status_code == 400
    assert "send the photo as a multipart/form-data file field" in page(response)


def test_a_filtered_upload_keeps_the_chosen_filter(client, catalogue_dir, styles):
    photo = (catalogue_dir / "images" / "10001.jpg").read_bytes()
    value = styles[4]["articleType"]
    response = client.post(
        "/search",
        data={"image": upload(photo), "articleType": value},
        content_type="multipart/form-data",
    )

    by_id = {row["id"]: row for row in styles}
    ids = result_ids(page(response))
    assert ids
    assert {by_id[i]["articleType"] for i in ids} == {value}


def test_more_like_this_shows_five_other_items(client, styles):
    response = client.get("/items/10003")

    html = page(response)
    name = next(r for r in styles if r["id"] == "10003")["productDisplayName"]
    assert response.status_code == 200
    assert 'src="/images/10003"' in html
    assert name in html
    ids = result_ids(html)
    assert len(ids) == 5
    assert not {"10003", "20001", "20002"} & set(ids)


def test_more_like_an_unknown_item_comes_back_to_the_form(client):
    response = client.get("/items/nope")

    assert response.status_code == 404
    assert "no item with id &#39;nope&#39; in the index" in page(response)
