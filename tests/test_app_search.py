"""The JSON search API: results, filters, duplicates, similar items."""

import hashlib

import pytest
from service_fixtures import COPIES, upload


def image_of(catalogue_dir, item_id: str) -> bytes:
    return (catalogue_dir / "images" / f"{item_id}.jpg").read_bytes()


def groups(catalogue_dir, styles) -> dict[str, str]:
    """item id -> id of the first item with the same bytes."""
    first, group = {}, {}
    for row in styles:
        digest = hashlib.sha256(image_of(catalogue_dir, row["id"])).hexdigest()
        group[row["id"]] = first.setdefault(digest, row["id"])
    return group


def search(client, data: bytes, **form):
    return client.post(
        "/api/v1/search",
        data={"image": upload(data), **form},
        content_type="multipart/form-data",
    )


def result_ids(body, query=0):
    return [r["id"] for r in body["queries"][query]["results"]]


def test_search_finds_the_catalogue_image_itself_first(client, catalogue_dir):
    response = search(client, image_of(catalogue_dir, "10007"))

    assert response.status_code == 200
    body = response.get_json()
    results = body["queries"][0]["results"]
    assert [r["rank"] for r in results] == [1, 2, 3, 4, 5]
    assert results[0]["id"] == "10007"
    assert results[0]["distance"] == pytest.approx(0.0, abs=1e-5)
    distances = [r["distance"] for r in results]
    assert distances == sorted(distances)
    assert results[0]["image_url"] == "/images/10007"
    assert set(body["timings_ms"]) == {"decode", "embed", "search", "total"}
    assert body["model"]["backbone"] == "mobilenet_v2"
    assert body["model"]["random_weights"] is True
    assert body["index"]["item_count"] == 42
    assert body["index"]["demo"] is True


def test_search_returns_the_items_metadata(client, catalogue_dir, styles):
    response = search(client, image_of(catalogue_dir, "10010"), k="1")

    row = next(r for r in styles if r["id"] == "10010")
    expected = {name: value for name, value in row.items() if name != "id"}
    assert response.get_json()["queries"][0]["results"][0]["metadata"] == expected


def test_several_image_parts_give_one_result_list_each(client, catalogue_dir):
    response = client.post(
        "/api/v1/search",
        data={
            "image": [
                upload(image_of(catalogue_dir, "10001")),
                upload(image_of(catalogue_dir, "10002")),
            ],
            "k": "3",
        },
        content_type="multipart/form-data",
    )

    body = response.get_json()
    assert response.status_code == 200
    assert len(body["queries"]) == 2
    assert result_ids(body, 0)[0] == "10001"
    assert result_ids(body, 1)[0] == "10002"
    assert [len(q["results"]) for q in body["queries"]] == [3, 3]


def test_duplicates_collapse_to_one_result_and_k_is_still_met(
    client, catalogue_dir, styles
):
    group = groups(catalogue_dir, styles)
    response = search(client, image_of(catalogue_dir, "10003"), k="10")

    ids = result_ids(response.get_json())
    assert len(ids) == 10
    assert ids[0] == "10003"
    assert [i for i in ids if i in {"10003", *dict(COPIES)}] == ["10003"]
    assert len({group[i] for i in ids}) == 10


def test_k_larger_than_the_catalogue_returns_every_distinct_image(
    client, catalogue_dir, styles
):
    group = groups(catalogue_dir, styles)
    response = search(client, image_of(catalogue_dir, "10001"), k="50")

    ids = result_ids(response.get_json())
    assert len(ids) == len(set(group.values()))
    assert sorted({group[i] for i in ids}) == sorted(set(group.values()))


@pytest.mark.parametrize("field", ["articleType", "baseColour", "gender"])
def test_a_filtered_search_returns_k_matches_when_k_items_pass(
    client, catalogue_dir, styles, field
):
    group = groups(catalogue_dir, styles)
    values = [r[field] for r in styles]
    value = max(set(values), key=values.count)  # the commonest value
    passing = {group[r["id"]] for r in styles if r[field] == value}
    k = min(5, len(passing))
    # Query with an item that does not pass, so the filter does real work.
    other = next(r["id"] for r in styles if r[field] != value)

    response = search(
        client, image_of(catalogue_dir, other), k=str(k), **{field: value}
    )

    results = response.get_json()["queries"][0]["results"]
    assert response.status_code == 200
    assert len(results) == k
    assert all(r["metadata"][field] == value for r in results)


def test_a_filter_with_fewer_matches_than_k_returns_all_of_them(
    client, catalogue_dir, styles
):
    group = groups(catalogue_dir, styles)
    values = [r["articleType"] for r in styles]
    rare = min(set(values), key=values.count)
    expected = {group[r["id"]] for r in styles if r["articleType"] == rare}

    response = search(
        client, image_of(catalogue_dir, "10001"), k="50", articleType=rare
    )

    ids = result_ids(response.get_json())
    assert {group[i] for i in ids} == expected
    assert len(ids) == len(expected)


def test_filters_combine(client, catalogue_dir, styles):
    row = next(r for r in styles if r["id"] == "10005")
    expected = [
        r["id"]
        for r in styles
        if r["gender"] == row["gender"] and r["masterCategory"] == row["masterCategory"]
    ]

    response = search(
        client,
        image_of(catalogue_dir, "10005"),
        k="50",
        gender=row["gender"],
        masterCategory=row["masterCategory"],
    )

    ids = result_ids(response.get_json())
    assert ids[0] == "10005"
    assert set(ids) <= set(expected)
    assert len(ids) == len({groups(catalogue_dir, styles)[i] for i in expected})


def test_similar_excludes_the_item_and_its_copies(client):
    response = client.get("/api/v1/items/10003/similar?k=6")

    body = response.get_json()
    ids = [r["id"] for r in body["results"]]
    assert response.status_code == 200
    assert body["item"]["id"] == "10003"
    assert len(ids) == 6
    assert not {"10003", "20001", "20002"} & set(ids)
    assert [r["rank"] for r in body["results"]] == [1, 2, 3, 4, 5, 6]


def test_similar_matches_a_search_with_the_items_own_image(client, catalogue_dir):
    searched = result_ids(
        search(client, image_of(catalogue_dir, "10012"), k="6").get_json()
    )
    similar = client.get("/api/v1/items/10012/similar?k=5").get_json()

    assert [r["id"] for r in similar["results"]] == searched[1:]


def test_similar_honours_filters(client, styles):
    target = next(r for r in styles if r["id"] == "10004")["masterCategory"]

    response = client.get(f"/api/v1/items/10004/similar?k=3&masterCategory={target}")

    results = response.get_json()["results"]
    assert len(results) == 3
    assert {r["metadata"]["masterCategory"] for r in results} == {target}
