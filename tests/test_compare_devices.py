"""scripts/compare_devices.py keeps working: on the CPU it must find the committed metrics exactly."""

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "compare_devices.py"


def test_cpu_against_the_committed_cpu_metrics_differs_by_nothing():
    spec = importlib.util.spec_from_file_location("compare_devices", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    table, largest = module.compare("cpu")
    assert largest == 0.0
    assert table.count("\n") == 4  # header, rule, three implementations
    assert "| high_level | 1.0 | 1.0 |" in table
