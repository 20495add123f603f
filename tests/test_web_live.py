"""The live feed against a real `kanban serve` process, on both backends: an event made by
another process reaches an open stream, and a reconnect with Last-Event-ID misses nothing."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from kanban.testing import board_in, kanban_process, serve_process


@pytest.fixture
def served(repo: Path, repo_db: str) -> Iterator[str]:
    with board_in(repo):
        pass  # created (and on PostgreSQL, migrated) before the server opens it
    proc, base = serve_process(repo)
    try:
        yield base
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


class Stream:
    """An open /api/events stream, read event by event."""

    def __init__(self, base: str, headers: dict[str, str] | None = None) -> None:
        url = urlsplit(base)
        self.conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=30)
        self.conn.request("GET", "/api/events", headers=headers or {})
        self.response = self.conn.getresponse()
        assert self.response.status == 200
        assert self.response.getheader("content-type", "").startswith("text/event-stream")

    def next(self) -> tuple[int, dict[str, Any]]:
        fields: dict[str, str] = {}
        while True:
            line = self.response.fp.readline().decode().rstrip("\n")
            if line == "" and "data" in fields:
                return int(fields["id"]), json.loads(fields["data"])
            if line and not line.startswith(":"):
                name, _, value = line.partition(": ")
                fields[name] = value

    def close(self) -> None:
        self.conn.close()


def cli(repo: Path, *args: str) -> str:
    proc = kanban_process(repo, *args)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    return out


def test_a_change_from_the_cli_reaches_an_open_stream(served: str, repo: Path) -> None:
    stream = Stream(served)
    try:
        card = int(cli(repo, "add", "made elsewhere", "-q").strip())
        _, event = stream.next()
        assert (event["kind"], event["card_id"]) == ("created", card)
        cli(repo, "comment", str(card), "a note")
        assert stream.next()[1]["kind"] == "commented"
    finally:
        stream.close()


def test_a_reconnect_with_last_event_id_misses_nothing(served: str, repo: Path) -> None:
    ids = [int(cli(repo, "add", f"card {i}", "-q").strip()) for i in range(3)]
    stream = Stream(served, {"Last-Event-ID": "0"})
    try:
        seen = [stream.next() for _ in ids]
    finally:
        stream.close()
    assert [e["card_id"] for _, e in seen] == ids
    first_id = seen[0][0]
    resumed = Stream(served, {"Last-Event-ID": str(first_id)})
    try:
        again = [resumed.next() for _ in ids[1:]]
    finally:
        resumed.close()
    assert again == seen[1:]


def test_serve_refuses_a_network_host_without_a_token(repo: Path) -> None:
    proc = kanban_process(repo, "serve", "--host", "0.0.0.0", "--port", "1")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "no token is set; set KANBAN_WEB_TOKEN" in out
