"""The agent's channel to the board: a private unix socket served by the run's supervisor.

An agent never holds a database URL or a lease token. `kanban` inside a run (KANBAN_SOCKET
set) and `kanban mcp` started by the agent send one request per connection to this socket;
the supervisor applies it with the run's token, scoped to the run's own card:

    -> {"verb": "complete", "card": 12, "args": {"summary": "...", "metadata": {...}}}\\n
    <- {"ok": true, "result": {...}}\\n        or  {"ok": false, "error": "...", "code": 5}\\n

Verbs: show, complete, block (with a kind), fail, comment, add (a child of the card),
heartbeat (with a note). Anything else, another card, a request from a process that is not
the agent's, a malformed or oversized request, or any request once the run has ended is
refused with a message and logged in the run's log; the supervisor never falls over on it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kanban import errors

logger = logging.getLogger(__name__)

ENV = "KANBAN_SOCKET"
SOCKET_NAME = "agent.sock"
VERBS = ("show", "complete", "block", "fail", "comment", "add", "heartbeat")
WRITES = frozenset(VERBS) - {"show"}
BLOCK_KINDS = ("needs_input", "dependency", "capability", "transient")
MAX_REQUEST = 256 * 1024  # bytes of one request line
MAX_TEXT = 64 * 1024  # characters of a summary, reason, comment, body or note
MAX_CHILDREN = 20  # cards one run may add
READ_TIMEOUT = 10.0  # seconds a connection may take to send its request


class Refused(errors.KanbanError):
    """The supervisor refused an agent's request (the message says why)."""

    exit_code = 2


# ---------------------------------------------------------------------- socket paths


@contextlib.contextmanager
def _address(path: Path) -> Any:
    """A name for `path` that fits AF_UNIX's 108 bytes: itself, or through /proc/self/fd."""
    if len(os.fsencode(path)) < 100:
        yield str(path)
        return
    fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


# ---------------------------------------------------------------------- the client


def in_run() -> bool:
    return bool(os.environ.get(ENV))


def request(
    verb: str,
    *,
    card: int | None = None,
    path: str | None = None,
    timeout: float = 60.0,
    **args: Any,
) -> Any:
    """Send one request to the run's supervisor and return its result, or raise Refused (or
    LeaseLost, when the run has ended)."""
    where = path or os.environ.get(ENV)
    if not where:
        raise errors.UsageError(f"not inside a run: ${ENV} is not set")
    body = json.dumps({"verb": verb, "card": card, "args": args}).encode() + b"\n"
    try:
        with (
            _address(Path(where)) as address,
            socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock,
        ):
            sock.settimeout(timeout)
            sock.connect(address)
            sock.sendall(body)
            sock.shutdown(socket.SHUT_WR)
            data = _read_line(sock, limit=16 * MAX_REQUEST)
    except (OSError, ValueError) as exc:
        raise Refused(
            f"cannot reach this run's supervisor at {where} ({exc}); the run may have ended"
        ) from exc
    try:
        answer = json.loads(data)
    except ValueError:
        raise Refused("the supervisor's answer was not JSON") from None
    if not answer.get("ok"):
        code = int(answer.get("code") or 2)
        cls = errors.LeaseLost if code == errors.LeaseLost.exit_code else Refused
        raise cls(str(answer.get("error") or "refused"))
    return answer.get("result")


def _read_line(sock: socket.socket, *, limit: int) -> bytes:
    chunks, size = [], 0
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if b"\n" in chunk:
            break
        if size > limit:
            raise ValueError(f"over {limit} bytes")
    return b"".join(chunks).split(b"\n", 1)[0]


# ---------------------------------------------------------------------- the server


Handler = Callable[[str, dict[str, Any]], Any]


class Server:
    """Serves the socket at `path` in a thread; `handle(verb, args)` applies a request that
    passed the checks here (known verb, own card, the agent's process, size, shape)."""

    def __init__(
        self,
        path: Path,
        *,
        card_id: int,
        handle: Handler,
        note: Callable[[str], None],
        is_agent: Callable[[int], bool] | None = None,
    ) -> None:
        self.path = path
        self.card_id = card_id
        self.handle = handle
        self.note = note
        self.is_agent = is_agent
        self.ended: str | None = None  # set when the run ends: later requests are refused
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()

    def start(self) -> Path:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # owner-only from the moment it exists
        try:
            with _address(self.path) as address:
                sock.bind(address)
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        sock.listen(16)
        sock.settimeout(0.5)
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, name="agent-channel", daemon=True)
        self._thread.start()
        return self.path

    def close(self) -> None:
        self._closing.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._sock is not None:
            self._sock.close()
        with contextlib.suppress(OSError):
            self.path.unlink()

    def _serve(self) -> None:
        assert self._sock is not None
        while not self._closing.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                try:
                    self._one(conn)
                except Exception:  # nothing an agent sends may stop the channel
                    logger.exception("agent channel: request failed")

    def _one(self, conn: socket.socket) -> None:
        conn.settimeout(READ_TIMEOUT)
        answer = self.answer(conn)
        with contextlib.suppress(OSError):
            conn.sendall(json.dumps(answer, default=str).encode() + b"\n")

    def answer(self, conn: socket.socket) -> dict[str, Any]:
        pid = _peer_pid(conn)
        try:
            raw = _read_line(conn, limit=MAX_REQUEST)
        except ValueError:
            return self._refuse(f"request over {MAX_REQUEST // 1024} KiB refused")
        except OSError as exc:
            return self._refuse(f"request not read ({exc})")
        if self.is_agent is not None and (pid is None or not self.is_agent(pid)):
            return self._refuse(
                f"process {pid} is not this run's agent or one of its children; refused"
            )
        try:
            req = json.loads(raw)
        except ValueError:
            return self._refuse("malformed request: not one line of JSON")
        if not isinstance(req, dict) or not isinstance(req.get("args", {}), dict):
            return self._refuse('malformed request: expected {"verb": ..., "args": {...}}')
        verb, card, args = req.get("verb"), req.get("card"), req.get("args") or {}
        if verb not in VERBS:
            return self._refuse(
                f"{verb!r} is not available inside a run: an agent may use "
                f"{', '.join(VERBS)} on its own card"
            )
        if card is not None and card != self.card_id:
            return self._refuse(
                f"card {card} is not this run's card: an agent may act only on its own card "
                f"({self.card_id}); nothing changed"
            )
        if self.ended is not None and verb in WRITES:
            return self._refuse(
                f"this run has ended ({self.ended}); {verb} refused, nothing changed",
                code=errors.LeaseLost.exit_code,
            )
        try:
            result = self.handle(verb, args)
        except errors.KanbanError as exc:
            return self._refuse(f"{verb}: {exc.message}", code=exc.exit_code)
        except (TypeError, ValueError) as exc:
            return self._refuse(f"{verb}: bad arguments ({exc})")
        return {"ok": True, "result": result}

    def _refuse(self, message: str, *, code: int = Refused.exit_code) -> dict[str, Any]:
        self.note(f"agent channel refused: {message}")
        return {"ok": False, "error": message, "code": code}


def _peer_pid(conn: socket.socket) -> int | None:
    try:
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None
    pid, _uid, _gid = struct.unpack("3i", creds)
    return pid or None
