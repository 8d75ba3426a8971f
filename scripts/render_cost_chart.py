"""Render the training cost curves of the last run to a PNG (docs/cost.png, shown in the README).

From the repository root, after `dvc repro`:  python -m scripts.render_cost_chart [docs/cost.png]
`dvc plots show` draws the same data interactively; this is a still picture of it.
"""

import csv
import sys

import vl_convert

from stages.models import IMPLEMENTATIONS


def cost_rows(impl: str) -> list[dict]:
    with open(f"plots/cost/{impl}.tsv", newline="") as f:
        return [
            {"implementation": impl, "epoch": int(r["epoch"]), "cost": float(r["cost"])}
            for r in csv.DictReader(f, delimiter="\t")
        ]


def chart(rows: list[dict]) -> dict:
    """All three curves on one chart; low_level dashed, since it lies exactly on functional."""
    return {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "title": "Training cost per epoch (every epoch; the lesson prints every 100th)",
        "width": 640,
        "height": 360,
        "data": {"values": rows},
        "mark": {"type": "line", "strokeWidth": 1.5},
        "encoding": {
            "x": {"field": "epoch", "type": "quantitative"},
            "y": {"field": "cost", "type": "quantitative", "title": "cross-entropy", "scale": {"zero": False}},
            "color": {"field": "implementation", "type": "nominal", "sort": list(IMPLEMENTATIONS)},
            "strokeDash": {
                "field": "implementation",
                "type": "nominal",
                "sort": list(IMPLEMENTATIONS),
                "scale": {"range": [[6, 3], [1, 0], [1, 0]]},
                "legend": None,
            },
        },
    }


def main() -> None:
    out = sys.argv[1] if len(sys.argv) > 1 else "docs/cost.png"
    # low_level last, so that its dashes are drawn on top of functional's identical curve.
    rows = [row for impl in reversed(IMPLEMENTATIONS) for row in cost_rows(impl)]
    with open(out, "wb") as f:
        f.write(vl_convert.vegalite_to_png(chart(rows), scale=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
