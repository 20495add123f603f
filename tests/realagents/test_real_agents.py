"""The shipped profiles against the real agent programs, as they behave on a machine with no
network but the package registries and no credentials: a real dispatcher, real supervisors,
the real `claude`, `codex`, `hermes` and `aider` (installed once; see conftest.py)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import kanban
from kanban import processes, profiles, testing
from kanban.testing import board_in, pid_alive

from .conftest import RealAgents

pytestmark = [pytest.mark.realagents, pytest.mark.slow]


@pytest.fixture
def board(repo: Path) -> Iterator[kanban.Board]:
    b = board_in(repo)
    yield b
    for card in b.cards(include_archived=True):  # leave no agent behind, whatever happened
        for run in b.runs(card.id):
            for pid in (run.pid, run.supervisor_pid):
                if pid and pid_alive(pid):
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(pid, signal.SIGKILL)
    b.close()


def drain(repo: Path, env: dict[str, str], timeout: float = 120) -> str:
    """`kanban dispatch --drain` with the agents' PATH and a throwaway HOME."""
    return testing.drain(repo, env=env, timeout=timeout)


def shipped_copy(repo: Path, name: str, **changes: str) -> None:
    """The shipped profile `name`, copied into the repository with some keys changed (a short
    idle limit for a test): same command, same patterns, same persona."""
    source = profiles.shipped_dir()
    text = (source / f"{name}.toml").read_text()
    for key, value in changes.items():
        text, count = re.subn(rf"(?m)^{key} = .*$", f"{key} = {value}", text)
        if not count:
            text += f"\n{key} = {value}\n"
    (repo / "profiles").mkdir(exist_ok=True)
    (repo / "profiles" / f"{name}.toml").write_text(text)
    persona = source / f"{name}.md"
    if persona.exists():
        (repo / "profiles" / persona.name).write_text(persona.read_text())


def group_gone(run: kanban.views.RunView) -> bool:  # type: ignore[name-defined]
    assert run.pid is not None and run.pid_started is not None
    identity = processes.Identity(run.pid, run.pid_started)
    return processes.state(identity) == "gone" and not processes.group_members(run.pid)


def test_claude_code_not_logged_in_is_blocked_at_once_with_its_own_message(
    repo: Path, board: kanban.Board, real_agents: RealAgents, tmp_path: Path
) -> None:
    card = board.add("Say hello", profile="claude-code")
    drain(repo, real_agents.env(tmp_path / "home", "claude"))
    final = board.get(card.id)
    runs = board.runs(card.id)
    assert final.status == "blocked"
    assert final.reason is not None and "Not logged in" in final.reason, final.reason
    assert [r.outcome for r in runs] == ["blocked"]  # no retry
    assert final.attempts == 1  # one attempt spent
    assert runs[0].exit_code == 1
    assert runs[0].cost_usd == 0.0 and runs[0].tokens_in == 0  # its result line was read
    assert group_gone(runs[0])


def test_codex_without_network_stalls_and_is_stopped_by_the_idle_timeout(
    repo: Path, board: kanban.Board, real_agents: RealAgents, tmp_path: Path
) -> None:
    shipped_copy(repo, "codex", idle_timeout='"3s"', max_attempts="1")
    card = board.add("Say hello", profile="codex")
    drain(repo, real_agents.env(tmp_path / "home", "codex"))
    runs = board.runs(card.id)
    assert [r.outcome for r in runs] == ["stalled"]
    assert runs[0].error is not None and runs[0].error.startswith("stalled: no output for")
    assert "Reconnecting" in runs[0].error  # it names the noise it kept printing
    assert group_gone(runs[0])
    final = board.get(card.id)
    assert final.status == "blocked" and final.attempts == 1  # the only attempt was spent
    assert final.reason is not None and "stalled" in final.reason


def test_hermes_not_configured_is_blocked_with_its_configuration_message(
    repo: Path, board: kanban.Board, real_agents: RealAgents, tmp_path: Path
) -> None:
    card = board.add("Say hello", profile="hermes")
    drain(repo, real_agents.env(tmp_path / "home", "hermes"))
    final = board.get(card.id)
    assert final.status == "blocked"
    assert final.reason is not None
    assert "no API keys or providers found" in final.reason, final.reason
    assert [r.outcome for r in board.runs(card.id)] == ["blocked"]
    assert group_gone(board.runs(card.id)[0])


def test_aider_with_no_keys_is_stopped_instead_of_waiting_for_a_browser(
    repo: Path, board: kanban.Board, real_agents: RealAgents, tmp_path: Path
) -> None:
    card = board.add("Say hello", profile="aider")
    drain(repo, real_agents.env(tmp_path / "home", "aider"))
    runs = board.runs(card.id)
    final = board.get(card.id)
    assert final.status == "blocked"
    assert final.reason is not None
    assert "No LLM model was specified and no API keys were provided" in final.reason
    assert [r.outcome for r in runs] == ["blocked"]
    assert runs[0].exit_code is None  # it was stopped: left alone it waits 5 minutes
    assert group_gone(runs[0])  # its OAuth callback server went with it


def test_the_real_programs_are_the_ones_the_profiles_name(real_agents: RealAgents) -> None:
    """`kanban profiles check` finds every real program on the PATH the tests use."""
    dirs = real_agents.need("claude", "codex", "hermes", "aider")
    env = {**os.environ, "PATH": os.pathsep.join([*map(str, dirs), os.environ["PATH"]])}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "kanban",
            "profiles",
            "check",
            "claude-code",
            "codex",
            "hermes",
            "aider",
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
