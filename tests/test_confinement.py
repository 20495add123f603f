"""Hostile agents (kanban.testing_hostile) run by a real dispatcher, supervisor and git: what
each tries, and that it gets nowhere. docs/security.md names these tests."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kanban import confine
from kanban.testing import board_in, drain, git, kanban_process, pid_alive, wait_for, write_profile

pytestmark = pytest.mark.slow


def hostile(repo: Path, name: str, report: Path, extra: str = "", **keys: str) -> None:
    argv = ["{python}", "-m", "kanban.testing_hostile", name, str(report)]
    argv += [extra] if extra else []
    lines = [
        f"command = {json.dumps(argv)}",
        'workspace = "worktree"',
        'env_allow = ["HOME", "PATH"]',
        *(f"{k} = {v}" for k, v in keys.items()),
    ]
    write_profile(repo, f"hostile-{name}", "\n".join(lines) + "\n")


def _report(path: Path) -> Any:
    """The agent's report: written after it reported, so maybe after the drain ended."""
    wait_for(path.exists, timeout=60, what=f"the hostile agent's report {path.name}")
    wait_for(lambda: path.read_text().endswith("}"), timeout=10, what="the whole report")
    return json.loads(path.read_text())


def test_no_secret_in_the_agents_environment_or_its_ancestors(repo: Path, tmp_path: Path) -> None:
    report = tmp_path / "environ.json"
    hostile(repo, "environ", report)
    with board_in(repo) as b:
        card = b.add("read environs", profile="hostile-environ")
    drain(repo, env={"DISPATCHER_SECRET": "do-not-leak"})
    found = _report(report)
    assert found["own"] == [], "no token, board URL or secret in the agent's own environment"
    # A supervisor forked by the fork server shows the fork server's command line.
    supervisor = [
        a
        for a in found["ancestors"]
        if {"kanban.supervisor", "kanban.forkserver"} & set(a["cmd"].split())
    ]
    assert supervisor, found
    for entry in found["ancestors"]:
        if entry["readable"] and found["uid"] != 0:
            # Another user's process (or root's) is readable only by root.
            assert "kanban" not in entry["cmd"], f"a kanban process is readable: {entry}"
        if entry in supervisor:
            # Even root, who reads every environ, finds no secret in the supervisor's: it
            # starts scrubbed, and its token and board come on standard input.
            assert not entry["readable"] or entry["secrets"] == [], entry
    with board_in(repo) as b:
        assert b.get(card.id).status == "done"


def test_a_non_dumpable_process_hides_its_environment_from_its_own_user() -> None:
    """confine.harden() (the supervisor and `kanban dispatch` call it): the same user can no
    longer read /proc/<pid>/environ. As root, who reads everything, both sides first become
    nobody (after their imports), and the plain side makes itself dumpable again."""
    drop = "import os\nif os.geteuid() == 0: os.setgid(65534); os.setuid(65534)\n"
    holder = (
        "import sys, time\n"
        "from kanban import confine\n" + drop + "if sys.argv[1] == 'harden': confine.harden()\n"
        "else: confine._prctl(confine.PR_SET_DUMPABLE, 1)\n"
        "print(confine.is_dumpable(), flush=True)\n"
        "time.sleep(60)\n"
    )
    reader = drop + "import sys; open(f'/proc/{sys.argv[1]}/environ', 'rb').read()"
    env = {**os.environ, "HELD_SECRET": "s3cret"}
    results = {}
    for mode in ("harden", "plain"):
        proc = subprocess.Popen(
            [sys.executable, "-c", holder, mode], env=env, stdout=subprocess.PIPE, text=True
        )
        try:
            assert proc.stdout is not None
            dumpable = proc.stdout.readline().strip()
            read = subprocess.run(
                [sys.executable, "-c", reader, str(proc.pid)], capture_output=True, text=True
            )
            results[mode] = (dumpable, read.returncode, read.stderr)
        finally:
            proc.kill()
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
    assert results["plain"][:2] == ("True", 0), results
    assert results["harden"][0] == "False" and results["harden"][1] != 0, results
    assert "Permission denied" in results["harden"][2]


def test_tokens_read_from_the_board_file_open_nothing(repo: Path, tmp_path: Path) -> None:
    report = tmp_path / "board.json"
    with board_in(repo) as b:
        other = b.add("another card", profile="demo", triage=True)
        hostile(repo, "board-file", report, str(other.id))
        card = b.add("steal tokens", profile="hostile-board-file")
    drain(repo)
    found = _report(report)
    assert found["found"] and found["tokens"] >= 1
    assert found["tried"] and all(t["result"] == "refused" for t in found["tried"]), found
    with board_in(repo) as b:
        mine = b.get(card.id)
        assert mine.status == "done" and mine.summary != "stolen token"
        assert b.get(other.id).status == "triage"


def test_another_card_cannot_be_finished_through_the_cli_or_mcp(repo: Path, tmp_path: Path) -> None:
    report = tmp_path / "other.json"
    with board_in(repo) as b:
        other = b.add("not yours", profile="demo", triage=True)
        hostile(repo, "other-card", report, str(other.id))
        card = b.add("finish someone else's card", profile="hostile-other-card")
    drain(repo)
    found = _report(report)
    assert found["cli_complete_other"]["rc"] == 2
    assert "not this run's card" in found["cli_complete_other"]["err"]
    assert found["cli_ls"]["rc"] == 2 and "not available inside a run" in found["cli_ls"]["err"]
    mcp = found["mcp"]
    assert mcp["tools"] == sorted(
        [
            "kanban_add",
            "kanban_block",
            "kanban_comment",
            "kanban_complete",
            "kanban_fail",
            "kanban_heartbeat",
            "kanban_show",
        ]
    )
    assert mcp["other_is_error"] and "not this run's card" in mcp["other_text"]
    assert mcp["show_card"] == card.id and not mcp["own_is_error"]
    with board_in(repo) as b:
        assert b.get(other.id).status == "triage"
        done = b.get(card.id)
        assert done.status == "done" and done.summary == "finished through MCP"


def test_hooks_an_agent_plants_are_not_run_by_kanbans_git(repo: Path, tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    report = tmp_path / "hooks.json"
    hostile(repo, "hooks", report, str(markers))
    with board_in(repo) as b:
        card = b.add("plant hooks", profile="hostile-hooks")
        child = b.add("after the hooks", profile="demo", parents=[card.id])
        other = b.add("also after", profile="demo", parents=[card.id])
        b.add("merges both", profile="demo", parents=[child.id, other.id])
    drain(repo)
    assert _report(report)["planted"]
    with board_in(repo) as b:
        planted = b.get(card.id)
        assert planted.status == "done"
        assert all(c.status == "done" for c in b.cards())
    # kanban committed the agent's leftover file, checked out worktrees, merged two parents:
    # none of it ran a hook.
    assert "left-over.txt" in git(repo, "ls-tree", "--name-only", planted.branch or "")
    assert sorted(p.name for p in markers.iterdir()) == []


EDIT_SHARED = (
    "import os, pathlib\n"
    "p = pathlib.Path('shared.txt')\n"
    "lines = p.read_text().splitlines()\n"
    "at = 0 if int(os.environ['KANBAN_CARD_ID']) % 2 == 0 else -1\n"
    "lines[at] += ' (edited by card ' + os.environ['KANBAN_CARD_ID'] + ')'\n"
    "p.write_text('\\n'.join(lines) + '\\n')\n"
)


def test_git_config_an_agent_writes_runs_nothing_in_kanbans_git(repo: Path, tmp_path: Path) -> None:
    """The agent writes the shared .git/config: filters (one through an include), merge and
    diff drivers (one redefining git's own `text`), fsmonitor, hooksPath, sshCommand, a
    credential helper, signing. Kanban then commits its leftovers (clean filters), checks out
    two children (smudge, fsmonitor, hooks), commits their edits of one file, merges both into
    a grandchild (merge drivers) and `kanban merge`s everything (dry run and real): nothing the
    agent configured runs, and the merges are git's own text merges."""
    markers = tmp_path / "markers"
    markers.mkdir()
    report = tmp_path / "git-config.json"
    hostile(repo, "git-config", report, str(markers))
    write_profile(
        repo,
        "edit-shared",
        f'command = {json.dumps(["{python}", "-c", EDIT_SHARED])}\nworkspace = "worktree"\n',
    )
    with board_in(repo) as b:
        card = b.add("write the git config", profile="hostile-git-config")
        one = b.add("edit the first line", profile="edit-shared", parents=[card.id])
        two = b.add("edit the last line", profile="edit-shared", parents=[card.id])
        both = b.add("merges both", profile="edit-shared", parents=[one.id, two.id])
    drain(repo)
    assert _report(report)["config"]
    ran = sorted(p.name for p in markers.iterdir())
    assert ran == [], f"kanban's git ran what the agent configured: {ran}"
    with board_in(repo) as b:
        assert [b.get(c.id).status for c in (card, one, two, both)] == ["done"] * 4, [
            (c.id, c.status, c.reason) for c in b.cards()
        ]
        branch = b.get(both.id).branch or ""
        planted = b.get(card.id).branch or ""
    for args in (("merge", "--dry-run"), ("merge",)):
        out, _ = kanban_process(repo, *args).communicate(timeout=120)
        assert "stopped" not in out, out
    assert sorted(p.name for p in markers.iterdir()) == []
    # What was committed is the files as they are (no filter ran), merged by git's text merge.
    shown = git(repo, "show", f"{branch}:shared.txt").splitlines()
    assert shown[0].startswith("first (edited by card") and "edited by card" in shown[-1]
    assert "left-over.txt" in git(repo, "ls-tree", "--name-only", planted)
    assert git(repo, "show", f"{planted}:data.y") == "through the included filter"


def test_nothing_an_agent_starts_outlives_its_run(repo: Path, tmp_path: Path) -> None:
    report = tmp_path / "escape.json"
    hostile(repo, "escape", report)
    with board_in(repo) as b:
        card = b.add("leave things running", profile="hostile-escape")
    drain(repo)
    pids = _report(report)["pids"]
    assert set(pids) == {"setsid", "process_group", "nohup", "double_fork"}
    wait_for(
        lambda: not [p for p in pids.values() if pid_alive(p)],
        timeout=60,
        what=f"the agent's escaped children {pids} to be stopped",
    )
    with board_in(repo) as b:
        assert b.get(card.id).status == "done"


def test_escape_sequences_from_an_agent_never_reach_the_terminal(
    repo: Path, tmp_path: Path
) -> None:
    report = tmp_path / "escapes.json"
    hostile(repo, "escapes", report)
    with board_in(repo) as b:
        card = b.add("print escapes", profile="hostile-escapes")
    drain(repo)
    assert _report(report)["rc"] == 0
    for args in (("show", str(card.id)), ("ls",), ("runs", str(card.id)), ("logs", str(card.id))):
        out, _ = kanban_process(repo, *args).communicate(timeout=60)
        assert "\x1b" not in out and "\x9b" not in out and "\x07" not in out, (args, out)
    shown, _ = kanban_process(repo, "show", str(card.id), "--json").communicate(timeout=60)
    assert "\x1b" not in shown and "\x9b" not in shown, "no raw escape in JSON either"
    reason = json.loads(shown)["card"]["reason"]
    # JSON keeps the text, escaped; a question for a person is kept as the agent asked it.
    assert reason == "\x1b[2Jcleared \x1b]0;title\x07 and \x9b31m C1", reason
    with board_in(repo) as b:  # the board keeps the text as the agent gave it
        assert "\x1b[2J" in (b.get(card.id).reason or "")


def test_confine_supervisor_env_is_an_allow_list() -> None:
    parent = {"PATH": "/bin", "HOME": "/h", "AWS_SECRET": "x", "KANBAN_DB": "u", "KEEP_A": "1"}
    env = confine.supervisor_env(parent, allow=["KEEP_*"], settings={"KANBAN_HOST_ID": "h1"})
    assert env == {"PATH": "/bin", "HOME": "/h", "KEEP_A": "1", "KANBAN_HOST_ID": "h1"}


needs_bwrap = pytest.mark.skipif(
    shutil.which("bwrap") is None, reason="bubblewrap is not installed (apt-get install bubblewrap)"
)


def _sandboxed_run(
    repo: Path, *, network: bool, env: dict[str, str] | None = None
) -> tuple[Any, Any]:
    board_file = repo / ".kanban" / "board.db"
    hostile(
        repo,
        "sandboxed",
        Path("-"),
        str(board_file),
        sandbox='"bwrap"',
        network=str(network).lower(),
    )
    fake = repo / "worktrees" / "99-someone-else"
    fake.mkdir(parents=True)
    (fake / "secret.txt").write_text("another card's work\n")
    with board_in(repo) as b:
        card = b.add("work in a box", profile="hostile-sandboxed")
    drain(repo, env=env)
    with board_in(repo) as b:
        done = b.get(card.id)
        run = b.runs(card.id)[-1]
        found = _report(b.settings.state_dir / "runs" / str(run.id) / "hostile.json")
    return done, found


@needs_bwrap
def test_a_sandboxed_agent_sees_its_worktree_and_socket_not_the_board(
    repo: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"  # the dispatcher's HOME, the agent's too: writable inside
    home.mkdir()
    (home / ".gitconfig").write_text("[user]\n\tname = the user\n")
    done, found = _sandboxed_run(repo, network=True, env={"HOME": str(home)})
    assert found["home_writable"], "its HOME is writable"
    assert found["gitconfig_written"] is False, "the global git config kanban trusts is not"
    assert (home / ".gitconfig").read_text() == "[user]\n\tname = the user\n"
    assert not found["board_visible"] and not found["logs_visible"]
    assert found["other_worktrees"] == [], "other cards' worktrees are hidden"
    assert not found["hook_written"], "the hooks directory is read-only"
    assert found["committed"], "its worktree and the git objects are writable"
    assert found["network"], "the network is on unless the profile says otherwise"
    assert found["complete_rc"] == 0 and done.status == "done" and done.summary == "sandboxed"
    assert "work.txt" in git(repo, "ls-tree", "--name-only", done.branch or "")
    assert not (repo / ".git" / "hooks" / "post-checkout").exists()


@needs_bwrap
def test_a_sandboxed_profile_can_turn_the_network_off(repo: Path) -> None:
    done, found = _sandboxed_run(repo, network=False)
    assert found["network"] is False and done.status == "done"


def test_a_sandbox_without_bubblewrap_is_refused_with_the_install_hint(
    repo: Path, tmp_path: Path
) -> None:
    """Refused by `profiles check` and at claim: the card is not claimed on a host without
    bwrap (it stays ready, no run), and `kanban why` says what is missing."""
    hostile(repo, "sandboxed", Path("-"), "x", sandbox='"bwrap"')
    bare = tmp_path / "bin"  # a PATH with git, but no bwrap (python is sys.executable)
    bare.mkdir()
    for tool in ("git",):
        found = shutil.which(tool)
        assert found is not None
        (bare / tool).symlink_to(found)
    env = {"PATH": str(bare)}
    out, _ = kanban_process(repo, "profiles", "check", "hostile-sandboxed", env=env).communicate(
        timeout=60
    )
    assert "bubblewrap (bwrap) is not on PATH" in out and "apt-get install bubblewrap" in out
    with board_in(repo) as b:
        card = b.add("no box here", profile="hostile-sandboxed")
        other = b.add("a card this host can run", profile="demo")
    ticked = kanban_process(repo, "dispatch", "--once", env=env)
    out, _ = ticked.communicate(timeout=120)
    assert ticked.returncode == 0, out
    why, _ = kanban_process(repo, "why", str(card.id), env=env).communicate(timeout=60)
    assert "profile hostile-sandboxed needs bubblewrap (bwrap), not found on this host" in why
    assert "apt-get install bubblewrap" in why
    with board_in(repo) as b:
        assert b.get(card.id).status == "ready" and b.runs(card.id) == []
        wait_for(lambda: b.get(other.id).status == "done", timeout=60, what="the demo card")
        assert b.get(card.id).status == "ready" and b.runs(card.id) == []


def test_a_killed_supervisors_escaped_children_are_stopped_by_the_dispatcher(
    repo: Path, tmp_path: Path
) -> None:
    """The supervisor (their subreaper) is SIGKILLed: the dispatcher's "agent is gone" check
    finds what the agent left outside its group by the run's socket in their environment."""
    import signal

    report = tmp_path / "escape.json"
    hostile(repo, "escape-and-hang", report)
    with board_in(repo) as b:
        card = b.add(
            "escape, then lose the supervisor", profile="hostile-escape-and-hang", max_attempts=1
        )
    loop = kanban_process(repo, "dispatch", stdout=subprocess.DEVNULL)
    try:
        pids = _report(report)["pids"]
        with board_in(repo) as b:
            run = wait_for(
                lambda: next((r for r in b.runs(card.id) if r.supervisor_pid), None),
                timeout=60,
                what="the supervisor to check in",
            )
            os.kill(run.supervisor_pid, signal.SIGKILL)
            wait_for(
                lambda: b.runs(card.id)[0].outcome is not None,
                timeout=60,
                what="the dispatcher to close the run",
            )
            assert b.runs(card.id)[0].outcome == "crashed"
        wait_for(
            lambda: not [p for p in pids.values() if pid_alive(p)],
            timeout=60,
            what=f"the escaped children {pids} to be stopped",
        )
    finally:
        loop.send_signal(signal.SIGTERM)
        loop.wait(timeout=60)
        with board_in(repo) as b:
            from kanban.testing import kill_run_processes

            kill_run_processes(b)


def _tagged(tag: str) -> list[int]:
    import psutil

    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        if tag in (proc.info.get("cmdline") or []):
            found.append(proc.info["pid"])
    return found


def _vanish_then_kill_the_supervisor(
    repo: Path, tmp_path: Path, *, no_dispatcher: bool = False, **keys: str
) -> None:
    """The agent leaves a process with its own session and an empty environment (no run
    mark), then its supervisor is SIGKILLed: that process must still be stopped. With
    `no_dispatcher`, the dispatcher is stopped first: nothing but the sandbox can do it."""
    import signal
    import uuid

    tag = f"kanban-vanish-{uuid.uuid4().hex}"
    hostile(repo, "vanish", Path("-"), tag, **keys)
    with board_in(repo) as b:
        card = b.add("vanish, then lose the supervisor", profile="hostile-vanish", max_attempts=1)
    loop = kanban_process(repo, "dispatch", stdout=subprocess.DEVNULL)
    try:
        with board_in(repo) as b:
            run = wait_for(
                lambda: next((r for r in b.runs(card.id) if r.supervisor_pid), None),
                timeout=60,
                what="the supervisor to check in",
            )
            report = b.settings.state_dir / "runs" / str(run.id) / "hostile.json"
            wait_for(report.exists, timeout=60, what="the agent to leave its process")
            assert _tagged(tag), "the escaped process runs"
            if no_dispatcher:
                loop.send_signal(signal.SIGTERM)  # it leaves running supervisors alone
                loop.wait(timeout=60)
                assert _tagged(tag), "the escaped process outlives the dispatcher"
            os.kill(run.supervisor_pid, signal.SIGKILL)
            wait_for(
                lambda: not _tagged(tag),
                timeout=60,
                what=f"the process that cleared its environment ({tag}) to be stopped",
            )
            if no_dispatcher:
                return
            wait_for(
                lambda: b.runs(card.id)[0].outcome is not None,
                timeout=60,
                what="the dispatcher to close the run",
            )
    finally:
        loop.send_signal(signal.SIGTERM)
        loop.wait(timeout=60)
        for pid in _tagged(tag):
            os.kill(pid, signal.SIGKILL)
        with board_in(repo) as b:
            from kanban.testing import kill_run_processes

            kill_run_processes(b)


def test_an_escape_with_a_cleared_environment_dies_when_its_supervisor_is_killed(
    repo: Path, tmp_path: Path
) -> None:
    """Supervisors forked by the fork server (the default): it is a child subreaper, so the
    orphans of a SIGKILLed supervisor come to it, and it stops them."""
    _vanish_then_kill_the_supervisor(repo, tmp_path)


@needs_bwrap
def test_a_sandboxed_escape_dies_with_its_sandbox_when_its_supervisor_is_killed(
    repo: Path, tmp_path: Path
) -> None:
    """bwrap --die-with-parent --unshare-pid: the supervisor's death kills bwrap, and with
    the sandbox's pid 1 every process inside, whatever its session or environment. No
    dispatcher is left to settle the run and no fork server to adopt the orphans (a
    fresh-Python supervisor): the sandbox alone does it."""
    with board_in(repo) as b:
        config = b.settings.state_dir / "config.toml"
    config.write_text((config.read_text() if config.exists() else "") + "fork_server = false\n")
    _vanish_then_kill_the_supervisor(repo, tmp_path, no_dispatcher=True, sandbox='"bwrap"')
