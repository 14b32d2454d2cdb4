"""The evaluation as report.json and one self-contained report.html.

The page needs no network and no other file: the chart is inline SVG and the
thumbnails are JPEG data URIs.
"""

import base64
import html
import io
import json
from pathlib import Path

from PIL import Image

from embedding.preprocess import ImageError, open_image

from .evaluate import LABELS, MIN_SUPPORT

THUMB_HEIGHT = 96  # stored size; shown at 88 px
METRICS = ("p@1", "p@5", "p@10", "map@10")
HEADERS = ("P@1", "P@5", "P@10", "mAP@10")


def write_report(result: dict, index_info: dict, out: Path, image_path) -> None:
    """Write ``out/report.json`` and ``out/report.html``.

    ``image_path(row)`` gives the catalogue file of an item, or None when the
    image cannot be found (the page then shows a grey box).
    """
    out.mkdir(parents=True, exist_ok=True)
    report = {"index": index_info, **result}
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.html").write_text(render_html(report, image_path))


def render_html(report: dict, image_path) -> str:
    info = report["index"]
    title = f"Retrieval quality: {info.get('name', 'index')}"
    at = report["overall"]["articleType"]
    parts = [
        f"<h1>{_e(title)}</h1>",
        "<p class=lead>Every labelled item searched against the rest of the "
        "catalogue (leave-one-out; byte-identical copies of the query left out). "
        f"<b>{at['p@5']:.1%}</b> of the top five answers share the query's "
        "article type.</p>",
        _facts(report),
        "<h2>Overall</h2>",
        _overall_table(report["overall"]),
        "<h2>Precision@5 by article type</h2>",
        f"<p class=note>Types with at least {MIN_SUPPORT} queries; "
        "the number is the support.</p>",
        _bar_chart(report["per_article_type"]),
        "<h2>Sample queries</h2>",
        "<p class=note>Query on the left, its five answers to the right; green "
        "when the answer has the query's article type.</p>",
        _samples(report["samples"], image_path),
        "<h2>Most frequent confusions</h2>",
        _confusion_table(report["confusions"]),
        "<h2>All article types</h2>",
        _type_table(report["per_article_type"]),
        "<h2>Definitions</h2>",
        "<ul>"
        + "".join(
            f"<li><b>{_e(k)}</b>: {_e(v)}</li>"
            for k, v in report["definitions"].items()
        )
        + "</ul>",
    ]
    return PAGE.format(title=_e(title), body="\n".join(parts))


def _facts(report: dict) -> str:
    info = report["index"]
    facts = {
        "backbone": info.get("backbone", "?"),
        "weights": info.get("weights_source", "?"),
        "recipe": _recipe(info.get("recipe")),
        "items": f"{report['items']:,}",
        "queries": f"{report['queries']:,}",
        "unlabelled (not scored)": f"{report['unlabelled']:,}",
        "byte-identical copies": f"{report['duplicate_items']:,}",
        "index built": info.get("built_at", "?"),
    }
    cells = "".join(
        f"<div><span>{_e(k)}</span><b>{_e(str(v))}</b></div>" for k, v in facts.items()
    )
    return f"<div class=facts>{cells}</div>"


def _recipe(recipe) -> str:
    if not isinstance(recipe, dict):
        return "?"
    text = f"{recipe.get('height')}x{recipe.get('width')} {recipe.get('resize')}"
    return text + (" + flip" if recipe.get("flip") else "")


def _overall_table(overall: dict) -> str:
    head = "".join(f"<th>{h}</th>" for h in HEADERS)
    rows = "".join(
        f"<tr><td>{_e(name)}</td>"
        + "".join(f"<td class=num>{overall[name][m]:.3f}</td>" for m in METRICS)
        + f"<td class=num>{overall[name]['queries']:,}</td></tr>"
        for name in LABELS
    )
    return f"<table><tr><th>label</th>{head}<th>queries</th></tr>{rows}</table>"


def _type_table(per_type: list[dict]) -> str:
    head = "".join(f"<th>{h}</th>" for h in HEADERS)
    rows = "".join(
        f"<tr><td>{_e(r['articleType'])}</td><td class=num>{r['support']:,}</td>"
        + "".join(f"<td class=num>{r[m]:.3f}</td>" for m in METRICS)
        + "</tr>"
        for r in per_type
    )
    return (
        "<table class=types><tr><th>articleType</th><th>support</th>"
        f"{head}</tr>{rows}</table>"
    )


def _confusion_table(confusions: list[dict]) -> str:
    if not confusions:
        return "<p>No wrong answers in the top five.</p>"
    rows = "".join(
        f"<tr><td>{_e(c['query_type'])}</td><td>{_e(c['answer_type'])}</td>"
        f"<td class=num>{c['count']:,}</td><td class=num>{c['share']:.1%}</td></tr>"
        for c in confusions
    )
    return (
        "<table><tr><th>query type</th><th>answered with</th><th>answers</th>"
        f"<th>share of its top-5 answers</th></tr>{rows}</table>"
    )


def _bar_chart(per_type: list[dict]) -> str:
    """Horizontal bars of precision@5, best first, as inline SVG."""
    rows = sorted(
        (r for r in per_type if r["support"] >= MIN_SUPPORT),
        key=lambda r: (-r["p@5"], r["articleType"]),
    )
    if not rows:
        return f"<p>No article type has {MIN_SUPPORT} or more queries.</p>"
    bar_h, gap, label_w, bar_w = 16, 4, 190, 420
    height = len(rows) * (bar_h + gap) + 24
    out = [
        f'<svg class=chart viewBox="0 0 {label_w + bar_w + 90} {height}" '
        f'width="{label_w + bar_w + 90}" height="{height}" role="img" '
        'aria-label="precision at 5 by article type">'
    ]
    for tick in (0, 0.25, 0.5, 0.75, 1.0):
        x = label_w + tick * bar_w
        out.append(
            f'<line x1="{x}" y1="0" x2="{x}" y2="{height - 18}" class=grid />'
            f'<text x="{x}" y="{height - 4}" class=tick>{tick:g}</text>'
        )
    for i, r in enumerate(rows):
        y = i * (bar_h + gap)
        width = r["p@5"] * bar_w
        hue = round(120 * r["p@5"])  # red (0) to green (120)
        out.append(
            f'<text x="{label_w - 6}" y="{y + bar_h - 4}" class=label>'
            f"{_e(r['articleType'])}</text>"
            f'<rect x="{label_w}" y="{y}" width="{width:.1f}" height="{bar_h}" '
            f'rx="2" fill="hsl({hue},55%,52%)"><title>{_e(r["articleType"])}: '
            f"P@5 {r['p@5']:.3f}, {r['support']} queries</title></rect>"
            f'<text x="{label_w + width + 4:.1f}" y="{y + bar_h - 4}" class=value>'
            f"{r['p@5']:.2f} ({r['support']})</text>"
        )
    out.append("</svg>")
    return "".join(out)


def _samples(samples: dict, image_path) -> str:
    parts = []
    for side, title in (
        ("best", "Best article types"),
        ("worst", "Worst article types"),
    ):
        parts.append(f"<h3>{title}</h3>")
        by_type: dict[str, list] = {}
        for s in samples.get(side, []):
            by_type.setdefault(s["articleType"], []).append(s)
        for name, group in by_type.items():
            parts.append(
                f"<h4>{_e(name)} <span>precision@5 {group[0]['type_p@5']:.2f}</span>"
                "</h4><div class=samples>"
            )
            parts.extend(_sample_row(s, image_path) for s in group)
            parts.append("</div>")
    return "".join(parts)


def _sample_row(sample: dict, image_path) -> str:
    query = _figure(sample["row"], sample["id"], "query", "query", image_path)
    answers = "".join(
        _figure(
            a["row"],
            a["id"],
            f"{a['articleType']} · {a['distance']:.2f}",
            "hit" if a["hit"] else "miss",
            image_path,
        )
        for a in sample["answers"]
    )
    return f"<div class=sample>{query}<div class=arrow>→</div>{answers}</div>"


def _figure(row, item_id, caption, kind, image_path) -> str:
    uri = thumbnail(image_path(row))
    img = (
        f'<img src="{uri}" alt="item {_e(str(item_id))}">'
        if uri
        else "<div class=noimg>no image</div>"
    )
    return (
        f"<figure class={kind}>{img}<figcaption>#{_e(str(item_id))}<br>"
        f"{_e(caption)}</figcaption></figure>"
    )


def thumbnail(path) -> str | None:
    """A small JPEG of the image as a data URI, or None when it cannot be read."""
    if path is None:
        return None
    try:
        img = open_image(path)
    except (ImageError, OSError):
        return None
    scale = THUMB_HEIGHT / img.height
    if scale < 1:
        img = img.resize(
            (max(1, round(img.width * scale)), THUMB_HEIGHT), Image.LANCZOS
        )
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def _e(text) -> str:
    return html.escape(str(text), quote=True)


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif;
  color: #222; max-width: 1100px; margin: 2em auto; padding: 0 1em; }}
h1 {{ font-size: 1.6em; margin-bottom: .2em; }}
h2 {{ margin-top: 1.8em; border-bottom: 1px solid #ddd; padding-bottom: .2em; }}
.lead {{ font-size: 1.1em; }}
.note {{ color: #666; margin-top: -.5em; }}
.facts {{ display: flex; flex-wrap: wrap; gap: .6em; }}
.facts div {{ background: #f4f5f7; border-radius: 6px; padding: .4em .8em; }}
.facts span {{ display: block; font-size: .8em; color: #666; }}
table {{ border-collapse: collapse; margin: .5em 0; }}
th, td {{ padding: .25em .8em; border-bottom: 1px solid #eee; text-align: left; }}
th {{ background: #f4f5f7; }}
td.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
.chart .grid {{ stroke: #e3e3e3; }}
.chart text {{ font-size: 12px; fill: #333; }}
.chart .label {{ text-anchor: end; }}
.chart .tick {{ text-anchor: middle; fill: #888; }}
.chart .value {{ fill: #555; }}
.samples {{ display: flex; flex-wrap: wrap; gap: .8em 1.5em; }}
h4 {{ margin: 1em 0 .4em; }}
h4 span {{ font-weight: normal; color: #666; margin-left: .5em; }}
.sample {{ display: flex; align-items: flex-start; gap: .3em; }}
.arrow {{ font-size: 1.6em; color: #aaa; align-self: center; }}
figure {{ margin: 0; width: 74px; text-align: center; font-size: 11px; }}
figure img, .noimg {{ height: {thumb}px; max-width: 74px; border: 3px solid #ccc;
  border-radius: 4px; background: #fff; }}
.noimg {{ display: flex; align-items: center; justify-content: center;
  width: 72px; margin: auto; color: #999; }}
figure.query img {{ border-color: #3b6fd8; }}
figure.hit img {{ border-color: #3aa55d; }}
figure.miss img {{ border-color: #d9534f; }}
figcaption {{ color: #555; overflow-wrap: anywhere; }}
</style></head>
<body>
{body}
</body></html>
""".replace("{thumb}", "88")
