"""The distribution's own name on the package index, and install hints that use it.

`kanban` on the index is an unrelated project, so a hint like `pip install 'kanban[postgres]'`
would install it. The command and the import package stay `kanban`.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from kanban.__about__ import DISTRIBUTION

ROOT = Path(__file__).resolve().parent.parent
# `pip install kanban` or `pip install 'kanban[...]'`: the other project's name.
WRONG = re.compile(r"pip install(?:\s+-[-\w]+)*\s+['\"]?kanban(?:\[[^\]]*\])?['\"]?(?![\w-])")


def _texts() -> list[Path]:
    found = [ROOT / "README.md", ROOT / "pyproject.toml"]
    for folder in ("kanban", "docs", "profiles", "deploy"):
        if (ROOT / folder).is_dir():
            found += [p for p in (ROOT / folder).rglob("*") if p.suffix in (".py", ".md", ".toml")]
    return found


def test_pyproject_names_our_distribution_and_keeps_the_kanban_command() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == DISTRIBUTION == "kanban-dispatch"
    assert project["scripts"] == {"kanban": "kanban.cli:main"}


def test_no_install_hint_names_the_other_project() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}: {m.group(0)}"
        for path in _texts()
        for m in WRONG.finditer(path.read_text(errors="replace"))
    ]
    assert offenders == []
    assert WRONG.search("pip install 'kanban[postgres]'")  # the pattern does catch the old hint
    assert not WRONG.search("pip install 'kanban-dispatch[postgres]'")


def test_postgres_hint_names_our_distribution() -> None:
    text = (ROOT / "kanban" / "db.py").read_text()
    assert "{DISTRIBUTION}[postgres]" in text


def test_readme_first_command_puts_kanban_on_path_and_second_is_the_ci_test_command() -> None:
    blocks = re.findall(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    first, second = blocks[0].strip(), blocks[1].strip()
    assert ". .venv/bin/activate" in first and first.endswith("&& kanban demo")
    assert "pip install ." in first
    ci = (ROOT / ".ci" / "run").read_text()
    assert "pip install --quiet -e '.[dev]'" in ci and ".venv/bin/pytest" in ci
    assert (
        second == "python3 -m venv .venv && .venv/bin/pip install -e '.[dev]' && .venv/bin/pytest"
    )
