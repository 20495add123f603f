"""kanban.gitsafe: kanban's own git runs nothing the repository's configuration names, and
keeps what the user's own (global) configuration sets. Real git, real config files."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from kanban import gitsafe
from kanban.testing import GIT_ENV


def _git(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        ["git", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **GIT_ENV, **(env or {})},
    )
    return done.stdout


@pytest.fixture
def home(tmp_path: Path) -> dict[str, str]:
    """A HOME of its own, with the user's global config (trusted) in it."""
    (tmp_path / "home").mkdir()
    return {"HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "home" / ".config")}


def _repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    (repo / "a.txt").write_text("a\n")
    _git(repo, "add", "a.txt")
    _git(repo, "commit", "-q", "-m", "a")
    return repo


def _config(repo: Path, key: str, value: str) -> None:
    _git(repo, "config", "--file", str(repo / ".git" / "config"), key, value)


def _safe(repo: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    full = gitsafe.environment(repo / ".git", env={**os.environ, **GIT_ENV, **env})
    return subprocess.run(
        ["git", "--no-pager", *args], cwd=repo, env=full, capture_output=True, text=True
    )


def test_a_filter_the_repository_defines_is_blanked_one_the_user_defines_is_kept(
    tmp_path: Path, home: dict[str, str]
) -> None:
    repo = _repo(tmp_path)
    marks = tmp_path / "marks"
    marks.mkdir()
    # The user's own filter (git-lfs installs one like it globally): kept, even when the
    # repository redefines it.
    Path(home["HOME"], ".gitconfig").write_text(
        f'[filter "mine"]\n\tclean = "sh -c \'touch {marks}/mine; tr a-z A-Z\'"\n'
    )
    _config(repo, "filter.mine.clean", f"sh -c 'touch {marks}/mine-redefined; cat'")
    _config(repo, "filter.x=y.clean", f"sh -c 'touch {marks}/odd-name; cat'")  # '=' in a name
    _config(repo, "filter.x=y.required", "true")
    (repo / ".gitattributes").write_text("*.up filter=mine\n*.odd filter=x=y\n")
    (repo / "b.up").write_text("kept lower\n")
    (repo / "c.odd").write_text("as is\n")
    done = _safe(repo, home, "add", "-A")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in marks.iterdir()) == ["mine"]
    staged = _safe(repo, home, "show", ":b.up").stdout
    assert staged == "KEPT LOWER\n", "the user's global filter ran"
    assert _safe(repo, home, "show", ":c.odd").stdout == "as is\n"


def test_drivers_from_an_include_and_a_worktree_config_are_blanked_whatever_the_condition(
    tmp_path: Path, home: dict[str, str]
) -> None:
    repo = _repo(tmp_path)
    marks = tmp_path / "marks"
    marks.mkdir()
    included = tmp_path / "inc.gitconfig"
    included.write_text(f'[filter "inc"]\n\tclean = "sh -c \'touch {marks}/inc; cat\'"\n')
    _config(repo, f"includeIf.gitdir:{repo}/.path", str(included))
    (repo / ".git" / "config.worktree").write_text(
        f'[filter "wt"]\n\tclean = "sh -c \'touch {marks}/wt; cat\'"\n'
    )
    _config(repo, "extensions.worktreeConfig", "true")
    _config(repo, "core.repositoryformatversion", "1")
    (repo / ".gitattributes").write_text("*.inc filter=inc\n*.wt filter=wt\n")
    (repo / "d.inc").write_text("d\n")
    (repo / "e.wt").write_text("e\n")
    done = _safe(repo, home, "add", "-A")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in marks.iterdir()) == []
    names = {k for k, _ in gitsafe.options(repo / ".git", env=home)}
    assert {"filter.inc.clean", "filter.wt.clean"} <= names


def test_upload_pack_and_credential_helpers_the_repository_names_are_not_run(
    tmp_path: Path, home: dict[str, str]
) -> None:
    repo = _repo(tmp_path)
    other = tmp_path / "other"
    _git(tmp_path, "clone", "-q", str(repo), str(other))
    marks = tmp_path / "marks"
    marks.mkdir()
    _config(other, "remote.origin.uploadpack", f"touch {marks}/uploadpack; git-upload-pack")
    _config(other, "credential.helper", f"!touch {marks}/helper")
    _config(other, "core.sshCommand", f"touch {marks}/ssh")
    Path(home["HOME"], ".gitconfig").write_text("[credential]\n\thelper = store\n")
    done = _safe(other, home, "fetch", "-q", *gitsafe.UPLOAD_PACK, "origin")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in marks.iterdir()) == []
    options = gitsafe.options(other / ".git", env=home)
    helpers = [(k, v) for k, v in options if k == "credential.helper"]
    assert helpers == [("credential.helper", ""), ("credential.helper", "store")]
    assert ("core.sshCommand", "ssh") in options


def test_a_repository_that_names_nothing_gets_only_the_fixed_overrides(
    tmp_path: Path, home: dict[str, str]
) -> None:
    repo = _repo(tmp_path)
    env = gitsafe.environment(repo / ".git", env={**home, "GIT_SSH_COMMAND": "ssh -i key"})
    count = int(env["GIT_CONFIG_COUNT"])
    assert count == len(gitsafe.ALWAYS)  # GIT_SSH_COMMAND given: git prefers it anyway
    assert (env["GIT_CONFIG_KEY_0"], env["GIT_CONFIG_VALUE_0"]) == ("core.hooksPath", "/dev/null")
