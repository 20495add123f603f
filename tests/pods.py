"""Pods for the scale-out tests: each one its own clone of a bare remote, its own HOME and
state directory, sharing nothing but the PostgreSQL board and the remote (tests/
test_board_clock.py, tests/test_pods.py). A pod's identity comes from POD_NAME, as in a
Kubernetes Deployment."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import psutil

import kanban
from kanban.testing import FAST, board_in, git, git_repo


class Pods:
    def __init__(self, root: Path, url: str) -> None:
        self.root = root
        self.url = url
        self.procs: list[subprocess.Popen[str]] = []
        seed = git_repo(root / "seed")
        self.origin = root / "origin.git"
        git(root, "clone", "-q", "--bare", str(seed), str(self.origin))
        self.profiles: dict[str, str] = {}

    def dir(self, name: str) -> Path:
        return self.root / "pods" / name

    def make(self, name: str) -> Path:
        """The pod's disk: `home/` and `work/`, a fresh clone of the remote with the profiles
        (the image would ship them, or the repository holds them)."""
        home, work = self.dir(name) / "home", self.dir(name) / "work"
        home.mkdir(parents=True)
        git(self.root, "clone", "-q", str(self.origin), str(work))
        git(work, "config", "user.name", f"agent on {name}")
        git(work, "config", "user.email", f"{name}@kanban.invalid")
        for profile, body in self.profiles.items():
            (work / "profiles").mkdir(exist_ok=True)
            (work / "profiles" / f"{profile}.toml").write_text(body)
        return work

    def env(self, name: str, **extra: str) -> dict[str, str]:
        home = self.dir(name) / "home"
        return {
            **os.environ,
            **FAST,
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "KANBAN_DB": self.url,
            "POD_NAME": name,
            "KANBAN_REMOTE": "origin",
            **extra,
        }

    def start(self, name: str, *args: str, **extra: str) -> subprocess.Popen[str]:
        """`kanban dispatch ARGS` as the pod's main process."""
        work = self.dir(name) / "work"
        if not work.exists():
            work = self.make(name)
        proc = subprocess.Popen(
            [sys.executable, "-m", "kanban", "dispatch", "-q", *args],
            cwd=work,
            env=self.env(name, **extra),
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.procs.append(proc)
        return proc

    def kill_tree(self, proc: subprocess.Popen[str]) -> list[int]:
        """kill -9 the pod's whole process tree (dispatcher, supervisors, agents), as a node
        that vanishes does; returns the pids."""
        try:
            parent = psutil.Process(proc.pid)
            tree = [parent, *parent.children(recursive=True)]
        except psutil.NoSuchProcess:
            tree = []
        for p in tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.send_signal(signal.SIGKILL)
        psutil.wait_procs(tree, timeout=10)
        proc.communicate()
        return [p.pid for p in tree]

    def delete(self, name: str) -> None:
        shutil.rmtree(self.dir(name))

    def board(self) -> kanban.Board:
        return board_in(self.root / "seed", db=self.url)

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                self.kill_tree(proc)
            elif proc.stdout is not None and not proc.stdout.closed:
                proc.communicate()
