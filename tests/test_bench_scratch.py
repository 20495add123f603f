"""The bench's temporary directories survive agents that still write into them (the Hermes
drain once crashed in its cleanup): agents are waited for, then killed, and removal retries."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from bench import common

WRITER = """\
import itertools, pathlib, sys
root = pathlib.Path(sys.argv[1])
print("writing", flush=True)
for n in itertools.count():
    try:
        (root / f"d{n % 50}").mkdir(exist_ok=True)
        (root / f"d{n % 50}" / f"f{n}").write_text("late")
    except OSError:
        pass
"""


def _writer(path: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline() == "writing\n"
    proc.stdout.close()  # it prints nothing more
    return proc


def test_removing_a_tree_while_an_agent_writes_into_it_never_raises(tmp_path: Path) -> None:
    target = tmp_path / "busy"
    target.mkdir()
    writer = _writer(target)
    try:
        common.remove_tree(target, attempts=2)  # may leave files behind, must not raise
    finally:
        assert common.settle([writer], grace=0.0) == 1
    common.remove_tree(target)
    assert not target.exists()


def test_scratch_settles_its_agents_before_removing_the_directory() -> None:
    agents: list[subprocess.Popen[Any]] = []
    with common.scratch(agents, grace=0.1) as tmp:
        agents.append(_writer(Path(tmp)))
        done = subprocess.Popen([sys.executable, "-c", "pass"])
        agents.append(done)
        done.wait()  # one that has finished (no timing: the writer never ends by itself)
    assert not Path(tmp).exists()
    assert agents[0].returncode is not None and agents[1].returncode == 0


def test_settle_waits_for_agents_that_finish_in_their_grace() -> None:
    agent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.2)"])
    assert common.settle([agent], grace=60.0) == 0
    assert agent.returncode == 0
