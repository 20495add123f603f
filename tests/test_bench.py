"""The benchmark harness runs end to end (tiny sizes) and reports both systems side by side.
No figure is checked: timings never decide a test. What is checked is that every measure ran
on both sides and that our claims were exact (no card handed out twice, none lost)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import POSTGRES_URL

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def _bench(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KANBAN_")}
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def hermes_python() -> str:
    """Hermes' interpreter, installed once by the harness (skipped when PyPI is out of reach)."""
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from bench.__main__ import HERMES_VERSION, hermes_python; print(hermes_python(None, HERMES_VERSION))",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        pytest.skip(f"could not install hermes-agent from PyPI: {proc.stderr.strip()[-300:]}")
    return proc.stdout.strip().splitlines()[-1]


def test_smoke_run_measures_both_systems_and_prints_them_side_by_side(
    hermes_python: str, tmp_path: Path
) -> None:
    saved = tmp_path / "run.json"
    args = ["--smoke", "--hermes-python", hermes_python, "--out", str(saved)]
    args += ["--postgres", POSTGRES_URL] if POSTGRES_URL else []
    proc = _bench(*args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert report["versions"]["ours"]["system"] == "kanban"
    assert report["versions"]["hermes"]["system"] == "hermes-agent"
    results = report["results"]
    expected = {"create", "claims_1", "claims_2", "tick_200", "handoff", "drain", "memory", "cli"}
    assert expected <= set(results)
    both = {"create", "claims_1", "claims_2", "tick_200", "memory", "cli"}
    for key, sides in results.items():
        assert "ours" in sides, key
        assert (set(sides) == {"ours", "hermes"}) == (key in both), (key, set(sides))
        for side, result in sides.items():
            assert "error" not in result, (key, side, result)
    claims = [k for k in results if "claims" in k]
    if POSTGRES_URL:
        assert {"pg_claims_1", "pg_claims_2", "pg_tick_200", "pg_share_30"} <= set(results)
        share = results["pg_share_30"]["ours"]
        assert share["done"] == share["cards"] == 30, share
        assert share["claimed_twice"] == 0 and share["errors"] == 0, share
    for key in claims:
        ours = results[key]["ours"]
        assert ours["double_claims"] == 0 and ours["errors"] == 0, ours
        assert ours["unique"] == ours["claimed"] == ours["cards"], ours
    assert results["drain"]["ours"]["complete"] is True
    assert results["handoff"]["ours"]["samples"] == 1
    # The table: one line per figure, our cell and Hermes' cell on it.
    table = proc.stderr[proc.stderr.index("figure") :]
    header, _, *lines = table.splitlines()
    assert "kanban" in header and "hermes" in header
    claims_line = next(line for line in lines if line.startswith("claims_2 "))
    assert claims_line.count("cards/s") == 2, claims_line
    # The saved run renders as the Markdown table of docs/performance.md.
    assert json.loads(saved.read_text()) == report
    rendered = _bench("--render", str(saved))
    assert rendered.returncode == 0, rendered.stderr
    assert "| figure | kanban | Hermes | kanban's lead |" in rendered.stdout
    row = next(line for line in rendered.stdout.splitlines() if line.startswith("| claims_2 |"))
    assert row.count("cards/s") == 2 and row.rstrip(" |").endswith("x"), row


def test_an_unknown_measure_is_refused_naming_the_choices() -> None:
    proc = _bench("--only", "claims,speed", "--side", "ours")
    assert proc.returncode == 2
    assert "unknown measure(s) speed" in proc.stderr
    assert "create, claims, tick" in proc.stderr
    assert proc.stdout == ""
