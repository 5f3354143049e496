"""README's demo rows quote docs/measured/readme_numbers.json, which
``python benchmarks/readme_numbers.py`` regenerates from the demo's runs: a change to the
training path that moves the demo's numbers shows up here until they are regenerated."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from readme_numbers import JSON_PATH, README, ROW_KEYS, rows  # noqa: E402  (benchmarks is not a package)


def test_readme_quotes_the_regenerated_numbers() -> None:
    numbers = json.loads(JSON_PATH.read_text())
    lines = README.read_text().splitlines()
    for key, row in rows(numbers).items():
        quoted = [line for line in lines if line.startswith(ROW_KEYS[key])]
        assert quoted == [row], f"README's {key} row differs from {JSON_PATH.name}: run python benchmarks/readme_numbers.py"
