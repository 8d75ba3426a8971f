"""scripts/render_cost_chart.py keeps working: it renders the committed cost curves to a PNG."""

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_renders_the_committed_curves_to_a_png(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("render_cost_chart", REPO / "scripts" / "render_cost_chart.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.chdir(REPO)
    rows = module.cost_rows("functional")
    assert len(rows) == 1001 and rows[100] == {"implementation": "functional", "epoch": 100, "cost": rows[100]["cost"]}
    monkeypatch.setattr("sys.argv", ["render", str(tmp_path / "cost.png")])
    module.main()
    assert (tmp_path / "cost.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
