"""The real agent CLIs, installed once from the package registries into a cache.

    ~/.cache/kanban-test-agents/          (or $REAL_AGENTS_CACHE)
      npm/node_modules/.bin/{claude,codex}   npm install --prefix npm @anthropic-ai/claude-code @openai/codex
      hermes/bin/hermes                      a venv with hermes-agent
      aider/bin/aider                        a venv with aider-chat

The first session installs what is missing, the three installs in parallel (75 s measured
from empty npm and pip caches, 1.5 GB on disk); later sessions reuse the cache. Delete the directory to
get the newest versions. A registry that cannot be reached skips the tests that need it,
saying so; an install that fails with the registry reachable is an error.

Tests get a `RealAgents` with the bin directories to put on the dispatcher's PATH, and run
it with a throwaway HOME, so no developer's login or key is ever read.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

# Not KANBAN_*: tests/conftest.py clears those so tests never see a developer's board.
CACHE = Path(os.environ.get("REAL_AGENTS_CACHE") or Path.home() / ".cache" / "kanban-test-agents")
NPM = {"claude": "@anthropic-ai/claude-code", "codex": "@openai/codex"}
PIP = {"hermes": "hermes-agent", "aider": "aider-chat"}
REGISTRIES = {"npm": "https://registry.npmjs.org/-/ping", "pypi": "https://pypi.org/simple/pip/"}
INSTALL_TIMEOUT = 900.0


@dataclasses.dataclass
class RealAgents:
    bins: dict[str, Path]  # program name -> its bin directory
    problems: dict[str, str]  # program name -> why it is not available
    versions: dict[str, str]

    def need(self, *names: str) -> list[Path]:
        """The bin directories for `names`; skips the test (saying why) if one is missing."""
        for name in names:
            if name in self.problems:
                pytest.skip(f"{name}: {self.problems[name]}")
        return [self.bins[n] for n in names]

    def env(self, home: Path, *names: str) -> dict[str, str]:
        """Variables for a dispatcher that runs `names`: their bin dirs first on PATH, and a
        fresh HOME with nothing in it (no login, no keys, no config)."""
        home.mkdir(parents=True, exist_ok=True)
        path = os.pathsep.join([*map(str, self.need(*names)), os.environ.get("PATH", "")])
        return {
            "PATH": path,
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "USER": os.environ.get("USER", "tests"),
        }


def _reachable(url: str) -> str | None:
    """None when `url` answers; otherwise why not."""
    try:
        with urllib.request.urlopen(url, timeout=15) as response:
            response.read(64)
        return None
    except (urllib.error.URLError, OSError) as exc:
        return f"{url} is unreachable ({exc})"


def _start_npm(target: Path) -> subprocess.Popen[str] | str:
    npm = shutil.which("npm")
    if npm is None:
        return "npm is not installed on this machine"
    target.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [npm, "install", "--prefix", str(target), "--no-audit", "--no-fund", *NPM.values()],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _start_venv(target: Path, package: str) -> subprocess.Popen[str]:
    script = (
        f"{sys.executable} -m venv {target} && "
        f"{target}/bin/pip install --quiet --disable-pip-version-check {package}"
    )
    return subprocess.Popen(
        ["sh", "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _version(program: Path) -> str:
    try:
        out = subprocess.run(
            [str(program), "--version"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "HOME": str(CACHE / "home")},
            check=False,
        )
        lines = (out.stdout or out.stderr).strip().splitlines()
        return lines[0] if lines else "?"
    except (OSError, subprocess.TimeoutExpired):
        return "?"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One installer at a time, across concurrent test sessions."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def install() -> RealAgents:
    wanted = {
        "claude": CACHE / "npm" / "node_modules" / ".bin",
        "codex": CACHE / "npm" / "node_modules" / ".bin",
        "hermes": CACHE / "hermes" / "bin",
        "aider": CACHE / "aider" / "bin",
    }
    problems: dict[str, str] = {}
    with _locked(CACHE / "install.lock"):
        missing = [n for n, d in wanted.items() if not (d / n).exists()]
        jobs: dict[str, tuple[list[str], subprocess.Popen[str] | str]] = {}
        started = time.monotonic()
        if {"claude", "codex"} & set(missing):
            names = [n for n in ("claude", "codex") if n in missing]
            why = _reachable(REGISTRIES["npm"])
            jobs["npm"] = (names, why if why else _start_npm(CACHE / "npm"))
        for name in ("hermes", "aider"):
            if name in missing:
                shutil.rmtree(CACHE / name, ignore_errors=True)  # a half-made venv
                why = _reachable(REGISTRIES["pypi"])
                jobs[name] = ([name], why if why else _start_venv(CACHE / name, PIP[name]))
        for _job, (names, proc) in jobs.items():
            if isinstance(proc, str):
                problems.update({n: f"not installed: {proc}" for n in names})
                continue
            try:
                out, _ = proc.communicate(timeout=INSTALL_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, _ = proc.communicate()
            if proc.returncode != 0:
                raise RuntimeError(f"installing {', '.join(names)} failed:\n{out[-3000:]}")
        if jobs:
            took = time.monotonic() - started
            print(f"\nreal agents: installed {', '.join(missing)} in {took:.0f}s into {CACHE}")
        versions = {n: _version(d / n) for n, d in wanted.items() if n not in problems}
        (CACHE / "versions.json").write_text(json.dumps(versions, indent=2) + "\n")
    return RealAgents(
        bins={n: d for n, d in wanted.items() if n not in problems},
        problems=problems,
        versions=versions,
    )


@pytest.fixture(scope="session")
def real_agents() -> RealAgents:
    return install()
