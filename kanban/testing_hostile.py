"""Hostile agents for the confinement tests (tests/test_confinement.py, docs/security.md).

Each one tries something an agent must not get away with, writes what it found to a JSON
report, and exits. Profiles run them as `{python} -m kanban.testing_hostile NAME REPORT [ARG]`:

    environ REPORT          read /proc/<pid>/environ of every ancestor, look for secrets
    board-file REPORT OTHER read the tokens in the board file and use them on card OTHER
    other-card REPORT OTHER finish card OTHER through `kanban` and through `kanban mcp`
    hooks REPORT MARKERS    plant git hooks in the shared git dir that touch MARKERS/<hook>
    git-config REPORT MARKERS
                            write the shared git config (filters, merge and diff drivers,
                            fsmonitor, hooksPath, an include, a worktree config) so that
                            each touches MARKERS/<what> when it runs outside the agent
    escape REPORT           leave children by setsid, a new process group, a double fork, nohup
    escape-and-hang REPORT  the same, then hang (for killing its supervisor)
    vanish REPORT TAG       a double fork into a new session with an empty environment
                            (env -i: no KANBAN_RUN_MARK), its argv tagged TAG, then hang
    escapes REPORT          print terminal escape sequences, block with some in the reason
    sandboxed REPORT BOARD  inside bubblewrap: look for the board, its logs, other worktrees,
                            write a hook, commit, reach the network

REPORT `-` means the run's own directory (beside $KANBAN_PROMPT_FILE): a sandboxed agent's
/tmp is its own.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SECRET_MARKS = ("DISPATCHER_SECRET", "KANBAN_DB=", "KANBAN_TOKEN=", "PGPASSWORD")
SLEEPER = [sys.executable, "-c", "import time; time.sleep(300)"]


def _kanban(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [os.environ["KANBAN_BIN"], *args], capture_output=True, text=True, timeout=60
    )


def environ() -> dict[str, Any]:
    import psutil

    seen = []
    proc: Any = psutil.Process(os.getpid()).parent()
    while proc is not None and proc.pid > 1:
        entry: dict[str, Any] = {"pid": proc.pid, "cmd": " ".join(proc.cmdline())[:120]}
        try:
            text = Path(f"/proc/{proc.pid}/environ").read_bytes().decode(errors="replace")
            entry["readable"] = True
            entry["secrets"] = [m for m in SECRET_MARKS if m in text]
        except OSError as exc:
            entry["readable"], entry["error"] = False, exc.strerror
        seen.append(entry)
        proc = proc.parent()
    own = [m for m in SECRET_MARKS if any(m.rstrip("=") == k for k in os.environ)]
    _kanban("complete", "--summary", "looked around")
    return {"ancestors": seen, "own": own, "uid": os.geteuid()}


def _board_file() -> Path | None:
    for here in [Path.cwd(), *Path.cwd().parents]:
        if (here / ".kanban" / "board.db").exists():
            return here / ".kanban" / "board.db"
    return None


def board_file(other: int) -> dict[str, Any]:
    from kanban import api, errors

    path = _board_file()
    if path is None:
        return {"found": False}
    with sqlite3.connect(path) as conn:
        stored = [row[0] for row in conn.execute("SELECT token FROM runs")]
    tried = []
    env = {k: v for k, v in os.environ.items() if k != "KANBAN_SOCKET"}
    os.environ.clear()
    os.environ.update(env)  # a person's shell, as far as kanban can tell
    with api.open_board(path) as board:
        for token in stored:
            for card in (other, int(env["KANBAN_CARD_ID"])):
                try:
                    board.complete(card, token=token, summary="stolen token")
                    tried.append({"card": card, "result": "accepted"})
                except errors.LeaseLost as exc:
                    tried.append({"card": card, "result": "refused", "why": exc.message})
    return {"found": True, "tokens": len(stored), "tried": tried}


def other_card(other: int) -> dict[str, Any]:
    import anyio

    found: dict[str, Any] = {}
    done = _kanban("complete", str(other), "--summary", "not mine")
    found["cli_complete_other"] = {"rc": done.returncode, "err": done.stderr.strip()}
    listed = _kanban("ls")
    found["cli_ls"] = {"rc": listed.returncode, "err": listed.stderr.strip()}
    found["mcp"] = anyio.run(_mcp_session, other)
    return found


async def _mcp_session(other: int) -> dict[str, Any]:
    from mcp.client.session import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    params = StdioServerParameters(
        command=os.environ["KANBAN_BIN"], args=["mcp"], env=dict(os.environ)
    )
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        tools = sorted(t.name for t in (await session.list_tools()).tools)
        refused = await session.call_tool("kanban_complete", {"summary": "x", "card": other})
        shown = await session.call_tool("kanban_show", {})
        mine = await session.call_tool("kanban_complete", {"summary": "finished through MCP"})
        return {
            "tools": tools,
            "other_is_error": refused.is_error,
            "other_text": " ".join(getattr(c, "text", "") for c in refused.content),
            "show_card": (shown.structured_content or {}).get("card", {}).get("id"),
            "own_is_error": mine.is_error,
        }


HOOKS = (
    "pre-commit",
    "post-commit",
    "post-checkout",
    "post-merge",
    "pre-merge-commit",
    "reference-transaction",
    "post-rewrite",
    "pre-push",
)


def hooks(markers: str) -> dict[str, Any]:
    common = subprocess.run(
        ["git", "rev-parse", "--git-common-dir"], capture_output=True, text=True, check=True
    ).stdout.strip()
    hooks_dir = Path(common).resolve() / "hooks"
    hooks_dir.mkdir(exist_ok=True)
    planted = []
    for name in HOOKS:
        hook = hooks_dir / name
        # The agent's own git runs hooks in its own environment (KANBAN_SOCKET set): its
        # business. Run without it, the hook runs in kanban's git: that must never happen.
        hook.write_text(f'#!/bin/sh\n[ -n "$KANBAN_SOCKET" ] || touch "{markers}/{name}"\n')
        hook.chmod(0o755)
        planted.append(str(hook))
    Path("left-over.txt").write_text("uncommitted: kanban commits it for me\n")
    return {"planted": planted}


def _marker(markers: str, name: str, then: str = "") -> str:
    """A command that leaves MARKERS/NAME when it runs in kanban's git (no KANBAN_SOCKET:
    the agent's own git running it is the agent's business), then runs THEN."""
    touch = f'[ -n "$KANBAN_SOCKET" ] || touch {markers}/{name}'
    return f"sh -c '{touch}; {then}' --" if then else f"sh -c '{touch}' --"


def git_config(markers: str) -> dict[str, Any]:
    common = Path(
        subprocess.run(
            ["git", "rev-parse", "--git-common-dir"], capture_output=True, text=True, check=True
        ).stdout.strip()
    ).resolve()
    hooks_dir = Path(markers).parent / "planted-hooks"
    hooks_dir.mkdir(exist_ok=True)
    for name in HOOKS:
        hook = hooks_dir / name
        hook.write_text(f'#!/bin/sh\n[ -n "$KANBAN_SOCKET" ] || touch "{markers}/hook-{name}"\n')
        hook.chmod(0o755)
    included = Path(markers).parent / "included.gitconfig"
    for key, what in (("filter.y.clean", "include-clean"), ("filter.y.smudge", "include-smudge")):
        subprocess.run(
            ["git", "config", "--file", str(included), key, _marker(markers, what, "cat")],
            check=True,
        )
    settings = {
        "filter.x.clean": _marker(markers, "filter-clean", "cat"),
        "filter.x.smudge": _marker(markers, "filter-smudge", "cat"),
        "filter.x.required": "true",
        "merge.x.driver": _marker(markers, "merge-driver", "exit 0"),
        "merge.text.driver": _marker(markers, "merge-text", "exit 0"),
        "diff.x.textconv": _marker(markers, "diff-textconv", 'cat "$1"'),
        "diff.external": _marker(markers, "diff-external"),
        "core.fsmonitor": _marker(markers, "fsmonitor"),
        "core.hooksPath": str(hooks_dir),
        "core.sshCommand": _marker(markers, "ssh-command"),
        "credential.helper": "!" + _marker(markers, "credential-helper"),
        "merge.verifySignatures": "true",
        "gpg.program": _marker(markers, "gpg"),
        "commit.gpgSign": "true",
        # Only when this worktree's git dir matches: kanban's own git must not care.
        f"includeIf.gitdir:{common}/.path": str(included),
    }
    # Set as the agent's own git would, without running what it sets (its own git, its own
    # business, would run the fsmonitor and sign its commits).
    for key, value in settings.items():
        subprocess.run(["git", "config", "--file", str(common / "config"), key, value], check=True)
    Path(".gitattributes").write_text("* filter=x merge=x diff=x\n*.y filter=y\n")
    Path("left-over.txt").write_text("uncommitted: kanban commits it for me\n")
    Path("data.y").write_text("through the included filter\n")
    Path("shared.txt").write_text("first\n\n\n\n\nlast\n")
    return {"config": sorted(settings)}


def escape() -> dict[str, Any]:
    pids = {}
    pids["setsid"] = subprocess.Popen(SLEEPER, start_new_session=True).pid
    pids["process_group"] = subprocess.Popen(SLEEPER, process_group=0).pid
    nohup = subprocess.Popen(["nohup", *SLEEPER], stdout=subprocess.DEVNULL)
    pids["nohup"] = nohup.pid
    read, write = os.pipe()
    first = os.fork()
    if first == 0:  # the double fork: a grandchild whose parent exits at once
        os.setsid()
        if os.fork() == 0:
            os.write(write, f"{os.getpid()}\n".encode())
            os.execv(SLEEPER[0], SLEEPER)  # noqa: S606  # a fixed argv, no card text
        os._exit(0)
    os.waitpid(first, 0)
    pids["double_fork"] = int(os.read(read, 64).decode().strip())
    time.sleep(0.2)
    return {"pids": pids}


def escape_and_hang(report: Path) -> dict[str, Any]:
    """`escape`, the report written at once, then hang until stopped."""
    found = escape()
    report.write_text(json.dumps(found, indent=2))
    while True:
        time.sleep(3600)


def vanish(report: Path, tag: str) -> dict[str, Any]:
    """Leave a process nothing of the run names: its own session, no environment at all, its
    parent gone. Only its argv (TAG) says what it is, for the test to look for it."""
    first = os.fork()
    if first == 0:
        os.setsid()
        if os.fork() == 0:
            argv = [sys.executable, "-c", "import time; time.sleep(300)", tag]
            os.execve(argv[0], argv, {})  # noqa: S606  # a fixed argv, no card text
        os._exit(0)
    os.waitpid(first, 0)
    report.write_text(json.dumps({"tag": tag}))
    while True:
        time.sleep(3600)


def escapes() -> dict[str, Any]:
    print("\x1b]0;owned\x07\x1b[2J\x1b[31mred text\x1b[0m \x1b]8;;http://x\x1b\\link", flush=True)
    done = _kanban("block", "--reason", "\x1b[2Jcleared \x1b]0;title\x07 and \x9b31m C1")
    return {"rc": done.returncode, "err": done.stderr}


def sandboxed(board: str) -> dict[str, Any]:
    import socket

    found: dict[str, Any] = {"board_visible": Path(board).exists()}
    found["logs_visible"] = (Path(board).parent / "logs").exists()
    here = Path.cwd()
    found["other_worktrees"] = sorted(p.name for p in here.parent.iterdir() if p != here)
    common = subprocess.run(
        ["git", "rev-parse", "--git-common-dir"], capture_output=True, text=True, check=True
    ).stdout.strip()
    hook = Path(common).resolve() / "hooks" / "post-checkout"
    try:
        hook.write_text("#!/bin/sh\ntouch /tmp/owned\n")
        found["hook_written"] = True
    except OSError as exc:
        found["hook_written"], found["hook_error"] = False, exc.strerror
    home = Path(os.environ["HOME"])
    try:
        (home / "agent-was-here").write_text("x\n")
        found["home_writable"] = True
    except OSError:
        found["home_writable"] = False
    try:
        with (home / ".gitconfig").open("a") as handle:
            handle.write("[core]\n\tfsmonitor = touch /tmp/owned\n")
        found["gitconfig_written"] = True
    except OSError as exc:
        found["gitconfig_written"], found["gitconfig_error"] = False, exc.strerror
    Path("work.txt").write_text("done inside the sandbox\n")
    git = ["git", "-c", "user.name=agent", "-c", "user.email=agent@example.invalid"]
    subprocess.run([*git, "add", "work.txt"], check=True)
    committed = subprocess.run([*git, "commit", "-q", "-m", "sandboxed work"])
    found["committed"] = committed.returncode == 0
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=5).close()
        found["network"] = True
    except OSError:
        found["network"] = False
    found["complete_rc"] = _kanban("complete", "--summary", "sandboxed").returncode
    return found


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    name, report = args[0], Path(args[1])
    if args[1] == "-":
        report = Path(os.environ["KANBAN_PROMPT_FILE"]).parent / "hostile.json"
    extra = args[2] if len(args) > 2 else ""
    found: dict[str, Any]
    if name == "environ":
        found = environ()
    elif name == "board-file":
        found = board_file(int(extra))
    elif name == "other-card":
        found = other_card(int(extra))
    elif name == "hooks":
        found = hooks(extra)
    elif name == "git-config":
        found = git_config(extra)
    elif name == "escape":
        found = escape()
    elif name == "escape-and-hang":
        found = escape_and_hang(report)
    elif name == "vanish":
        found = vanish(report, extra)
    elif name == "escapes":
        found = escapes()
    elif name == "sandboxed":
        found = sandboxed(extra)
    else:
        print(f"unknown hostile agent {name!r}", file=sys.stderr)
        return 2
    report.write_text(json.dumps(found, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
