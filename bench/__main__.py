"""python -m bench: this project and Hermes Agent's Kanban board, side by side, one run.

    python -m bench                  # everything (about 10 minutes: Hermes ticks once a minute)
    python -m bench --quick          # smaller boards, one handoff sample (about 5 minutes)
    python -m bench --only claims,tick --side ours
    python -m bench --postgres postgresql+psycopg://postgres@127.0.0.1:5432/test

Prints the results as JSON on stdout and a table on stderr. Hermes runs in its own virtual
environment (made on first use under ~/.cache/kanban-bench, `pip install hermes-agent==VERSION`;
or pass --hermes-python). See docs/performance.md for what each figure measures.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
import venv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HERMES_VERSION = "0.19.0"
MEASURES = ("create", "claims", "tick", "handoff", "drain", "memory", "cli", "share")


@dataclass
class Row:
    """One figure: a measure run on one or both sides with the same parameters."""

    key: str
    measure: str
    params: dict[str, Any]
    sides: tuple[str, ...] = ("ours", "hermes")
    hermes_params: dict[str, Any] = field(default_factory=dict)  # overrides for Hermes


def plan(size: str, postgres: str | None) -> list[Row]:
    smoke, quick = size == "smoke", size == "quick"
    cards = 40 if smoke else 500 if quick else 2000
    repeats = 1 if smoke or quick else 3  # claims: the median of three runs
    rows = [Row("create", "create", {"cards": 20 if smoke else 500 if quick else 2000})]
    for k in (1, 2) if smoke else (1, 4, 8):
        rows.append(
            Row(f"claims_{k}", "claims", {"cards": cards, "claimers": k, "repeats": repeats})
        )
    if not smoke:
        # What Hermes' claim design does without the check that breaks its locking (see
        # docs/performance.md): the fair ceiling of its approach.
        rows.append(
            Row(
                "claims_4_nocheck",
                "claims",
                {"cards": cards, "claimers": 4, "nocheck": True, "repeats": repeats},
                sides=("hermes",),
            )
        )
    for n in (200,) if smoke else (1_000, 10_000, 100_000):
        rows.append(
            Row(
                f"tick_{n // 1000}k" if n >= 1000 else f"tick_{n}",
                "tick",
                {"cards": n, "samples": 2 if smoke else 5},
            )
        )
    rows.append(
        Row(
            "handoff",
            "handoff",
            {"samples": 1 if smoke or quick else 2},
            sides=("ours",) if smoke else ("ours", "hermes"),
        )
    )
    n, chains = (10, 5) if smoke else (200, 50)
    rows.append(
        Row(
            "drain",
            "drain",
            {"cards": n, "chains": chains, "workers": 8},
            sides=("ours",) if smoke else ("ours", "hermes"),
            hermes_params={"interval": 60.0, "window": 130.0 if quick else 190.0},
        )
    )
    if not smoke:
        rows.append(
            Row(
                "drain_1s",
                "drain",
                {"cards": n, "chains": chains, "workers": 8, "interval": 1.0, "window": 600.0},
                sides=("hermes",),
            )
        )
    rows.append(Row("memory", "memory", {"workers": 2 if smoke else 8}))
    rows.append(Row("cli", "cli", {"samples": 1 if smoke else 10}))
    if postgres:
        for k in (1, 2) if smoke else (1, 4, 8):
            rows.append(
                Row(
                    f"pg_claims_{k}",
                    "claims",
                    {"cards": cards, "claimers": k, "url": postgres, "repeats": repeats},
                    sides=("ours",),
                )
            )
        n = 200 if smoke else 100_000  # the size issue 18 asks within 2x of SQLite
        rows.append(
            Row(
                f"pg_tick_{n // 1000}k" if n >= 1000 else f"pg_tick_{n}",
                "tick",
                {"cards": n, "samples": 2 if smoke else 5, "url": postgres},
                sides=("ours",),
            )
        )
        n = 30 if smoke else 300
        rows.append(
            Row(
                f"pg_share_{n}",
                "share",
                {"cards": n, "dispatchers": 3, "url": postgres},
                sides=("ours",),
            )
        )
    return rows


def hermes_python(explicit: str | None, version: str) -> str:
    """Hermes' interpreter: the one given, or a virtual environment made once for `version`."""
    if explicit:
        return explicit
    home = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "kanban-bench"
    env = home / f"hermes-agent-{version}"
    python = env / "bin" / "python"
    if not python.exists():
        print(f"installing hermes-agent {version} into {env} (once)...", file=sys.stderr)
        venv.EnvBuilder(with_pip=True, clear=True).create(env)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", f"hermes-agent=={version}"], check=True
        )
    return str(python)


def run_side(side: str, python: str, measure: str, params: dict[str, Any]) -> dict[str, Any]:
    argv = [python, "-m", f"bench.{side}", measure, json.dumps(params)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        return {
            "error": proc.stderr.strip().splitlines()[-1]
            if proc.stderr.strip()
            else f"exit {proc.returncode}"
        }
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = None
    with contextlib.suppress(ValueError, OSError):
        memory = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    return {"os": platform.platform(), "cpu": cpu, "cores": os.cpu_count(), "memory_gb": memory}


# ---------------------------------------------------------------------- the table


def _corrupt(errors: list[str]) -> bool:
    return any("corrupt" in e or "malformed" in e for e in errors)


def headline(measure: str, result: dict[str, Any]) -> str:
    if "error" in result:
        return "error: " + result["error"][:60]
    if measure in ("create",):
        return f"{result['per_second']:,.0f} cards/s"
    if measure == "claims":
        text = f"{result['unique'] / result['seconds']:,.0f} cards/s"
        faults = []
        if result["double_claims"]:
            faults.append(f"{result['double_claims']} double")
        if result["errors"]:
            faults.append(f"{result['errors']} errors")
        return text + (f" ({', '.join(faults)})" if faults else " (0 double, 0 errors)")
    if measure == "tick":
        return (
            f"{result['first_ms']:.1f} / {result['idle_ms']:.1f} / "
            f"{result['after_complete_ms']:.1f} ms"
        )
    if measure == "handoff" and result.get("median_ms") is None:
        errors = result.get("agent_error_sample", []) + result.get("tick_error_sample", [])
        return "no child started" + ("; board corrupt" if _corrupt(errors) else "")
    if measure == "handoff":
        return f"{result['median_ms'] / 1000:.2f} s (max {result['max_ms'] / 1000:.2f})"
    if measure == "drain":
        text = f"{result['per_minute']:,.1f} cards/min"
        if result["complete"]:
            return text
        errors = result.get("tick_error_sample", []) + result.get("agent_error_sample", [])
        why = "; board corrupt" if _corrupt(errors) else ""
        return f"{text} ({result['done']}/{result['cards']} done{why})"
    if measure == "memory":
        if result.get("per_card_uss_mb") is None:
            return "no supervisor process"
        return f"{result['per_card_uss_mb']:.1f} MB USS ({result['per_card_rss_mb']:.0f} RSS)"
    if measure == "share":
        return (
            f"{result['done']}/{result['cards']} done by {result['dispatchers']} dispatchers "
            f"in {result['seconds']:.1f} s ({result['claimed_twice']} claimed twice, "
            f"{result['errors']} errors)"
        )
    if measure == "cli":
        return f"add {result['add_ms']:.0f} ms, status {result['status_ms']:.0f} ms"
    return json.dumps(result)


def table(rows: list[Row], results: dict[str, dict[str, Any]]) -> str:
    lines = [f"{'figure':<18} {'kanban':<38} {'hermes':<38}", "-" * 94]
    for row in rows:
        got = results.get(row.key, {})
        cells = [headline(row.measure, got[s]) if s in got else "" for s in ("ours", "hermes")]
        lines.append(f"{row.key:<18} {cells[0]:<38} {cells[1]:<38}")
    lines.append("tick: first / idle / after one completion; claims: distinct cards per second")
    return "\n".join(lines)


def markdown(report: dict[str, Any]) -> str:
    """The results as the Markdown table of docs/performance.md (python -m bench --render)."""
    v, m = report["versions"], report["machine"]
    lines = [
        f"Measured {report['date']} on {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB, "
        f"{m['os']}; Python {v['ours']['python']}, SQLite {v['ours']['sqlite']}. "
        f"kanban {v['ours']['version']} (SQLAlchemy {v['ours']['sqlalchemy']}) against "
        f"hermes-agent {v.get('hermes', {}).get('version', '-')}.",
        "",
        "| figure | kanban | Hermes | kanban's lead |",
        "|---|---|---|---|",
    ]
    measures = {r.key: r.measure for r in plan("full", "postgres")}
    for key, sides in report["results"].items():
        measure = measures.get(key, key.split("_")[0])
        if key.endswith("_nocheck") and "ours" not in sides:  # against our same-size figure
            base = report["results"].get(key.removesuffix("_nocheck"), {})
            sides = {**sides, **({"ours": base["ours"]} if "ours" in base else {})}
        cells = [headline(measure, sides[s]) if s in sides else "" for s in ("ours", "hermes")]
        lines.append(f"| {key} | {cells[0]} | {cells[1]} | {ratio(measure, sides)} |")
    lines += [
        "",
        "tick: first / idle / after one completion, and the lead on each; claims: distinct cards",
        "per second (the median of three runs; double claims and errors over all three); a lead",
        "is how many times faster (or more) kanban is, below 1 where Hermes is ahead.",
    ]
    return "\n".join(lines)


def ratio(measure: str, sides: dict[str, dict[str, Any]]) -> str:
    """How many times better ours is on the headline number, where both have one."""
    ours, hermes = sides.get("ours"), sides.get("hermes")
    if not ours or not hermes or "error" in ours or "error" in hermes:
        return ""
    if measure == "claims":
        a, b = ours["unique"] / ours["seconds"], hermes["unique"] / hermes["seconds"]
        return f"{a / b:.1f}x" if b else ""
    if measure == "create":
        return f"{ours['per_second'] / hermes['per_second']:.1f}x"
    if measure == "tick":
        return " / ".join(
            f"{hermes[k] / ours[k]:.1f}x" for k in ("first_ms", "idle_ms", "after_complete_ms")
        )
    if measure == "handoff" and hermes.get("median_ms"):
        return f"{hermes['median_ms'] / ours['median_ms']:.0f}x"
    if measure == "drain" and hermes.get("complete"):
        return f"{ours['per_minute'] / hermes['per_minute']:.0f}x"
    if measure == "cli":
        add, status = hermes["add_ms"] / ours["add_ms"], hermes["status_ms"] / ours["status_ms"]
        return f"{add:.2f}x / {status:.2f}x"
    return ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--quick",
        action="store_const",
        dest="size",
        const="quick",
        help="smaller boards and fewer samples",
    )
    size.add_argument(
        "--smoke",
        action="store_const",
        dest="size",
        const="smoke",
        help="tiny sizes: checks the harness works, measures nothing useful",
    )
    parser.add_argument("--only", help=f"comma-separated measures of: {', '.join(MEASURES)}")
    parser.add_argument("--side", choices=("ours", "hermes", "both"), default="both")
    parser.add_argument("--hermes-python", help="Hermes' interpreter (default: a venv made once)")
    parser.add_argument("--hermes-version", default=HERMES_VERSION)
    parser.add_argument(
        "--postgres",
        default=os.environ.get("KANBAN_BENCH_POSTGRES_URL"),
        help="also measure claims and the tick on this PostgreSQL server",
    )
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    parser.add_argument(
        "--render", type=Path, metavar="JSON", help="print a saved run as Markdown; measure nothing"
    )
    args = parser.parse_args(argv)
    if args.render:
        print(markdown(json.loads(args.render.read_text())))
        return 0

    only = set(args.only.split(",")) if args.only else set(MEASURES)
    unknown = only - set(MEASURES)
    if unknown:
        parser.error(
            f"unknown measure(s) {', '.join(sorted(unknown))}; choose from {', '.join(MEASURES)}"
        )
    sides = ("ours", "hermes") if args.side == "both" else (args.side,)
    rows = [r for r in plan(args.size or "full", args.postgres) if r.measure in only]
    pythons = {"ours": sys.executable}
    if "hermes" in sides and any("hermes" in r.sides for r in rows):
        pythons["hermes"] = hermes_python(args.hermes_python, args.hermes_version)

    report: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "size": args.size or "full",
        "versions": {s: run_side(s, p, "version", {}) for s, p in pythons.items()},
        "results": {},
    }
    for row in rows:
        for side in row.sides:
            if side not in sides:
                continue
            params = {**row.params, **(row.hermes_params if side == "hermes" else {})}
            t0 = time.monotonic()
            result = run_side(side, pythons[side], row.measure, params)
            result["wall_s"] = round(time.monotonic() - t0, 1)
            report["results"].setdefault(row.key, {})[side] = result
            print(f"{row.key:<18} {side:<7} {headline(row.measure, result)}", file=sys.stderr)

    text = json.dumps(report, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    print("\n" + table(rows, report["results"]), file=sys.stderr)
    failed = [k for k, v in report["results"].items() for r in v.values() if "error" in r]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
