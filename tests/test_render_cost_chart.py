"""scripts/render_cost_chart.py keeps working: the README's command renders the committed cost curves to a PNG."""

import importlib.util
import struct
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_renders_the_committed_curves_to_a_png(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("render_cost_chart", REPO / "scripts" / "render_cost_chart.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.chdir(REPO)
    rows = module.cost_rows("functional")
    assert [row["epoch"] for row in rows] == list(range(1001))
    # The lesson prints "Epoch  100/1000 Cost: 0.761050" and, last, "Epoch 1000/1000 Cost: 0.399962".
    assert rows[100]["implementation"] == "functional" and f"{rows[100]['cost']:.6f}" == "0.761050"
    assert f"{rows[1000]['cost']:.6f}" == "0.399962"
    subprocess.run([sys.executable, "-m", "scripts.render_cost_chart", tmp_path / "cost.png"], cwd=REPO, check=True)
    png = (tmp_path / "cost.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
    width, height = struct.unpack(">II", png[16:24])
    assert width >= 2 * 640 and height >= 2 * 360  # the chart's size, at scale 2, with its axes and legend
