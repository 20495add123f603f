"""The quickstart's shell agent, as written in docs/quickstart.md, run by a real dispatcher:
the script is committed and executable, reads the card's JSON fields, and its work lands on
the card's branch."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from kanban.testing import board_in, drain, git

QUICKSTART = Path(__file__).resolve().parent.parent / "docs" / "quickstart.md"


def _script() -> str:
    text = QUICKSTART.read_text()
    start = text.index("cat > kanban-task <<'SH'\n") + len("cat > kanban-task <<'SH'\n")
    return text[start : text.index("\nSH\n", start) + 1]


def test_the_quickstart_shell_agent_runs_as_documented(repo: Path, repo_db: str) -> None:
    script = repo / "kanban-task"
    script.write_text(_script())
    script.chmod(0o755)
    git(repo, "add", "kanban-task")
    git(repo, "commit", "-q", "-m", "kanban-task: the shell agent")
    with board_in(repo, db=repo_db) as board:
        card = board.add("Try the shell agent", profile="shell")
        bin_dir = os.path.dirname(sys.executable)  # where `kanban` is installed
        drain(repo, env={"PATH": f"{bin_dir}:{os.environ['PATH']}"})
        done = board.get(card.id)
    assert done.status == "done"
    assert git(repo, "show", f"{done.branch}:RESULT.md") == "worked on: Try the shell agent"
