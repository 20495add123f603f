"""The run's log on disk, bounded: the agent's output and the supervisor's notes.

The agent's stdout and stderr go into a pipe that the supervisor pumps into the log
(`Pump`), so the supervisor is the log's only writer and can keep it under `max_log_bytes`
without losing a byte it means to keep. `AgentLog` keeps the log's first quarter (the header,
how the agent started) and its latest bytes; when a write would take the file over the limit,
the oldest part of the tail is cut: one `[kanban] … N bytes of output cut here …` line stands
where it was, and the tail is moved up behind it. The copy runs 1 MiB at a time on disk, never
the whole log in memory, and each cut frees half the tail's room, so cutting costs at most one
extra write of each byte.

Readers (the watcher) read by *logical* offset: the count of bytes ever written, which never
moves when the file is cut. A read that falls in the cut part resumes after it and says how
much it skipped.

If the supervisor dies, the agent's output has nowhere to go: its next write fails (SIGPIPE).
A dead supervisor's agent is found and stopped by the dispatcher anyway.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import threading
from pathlib import Path

from kanban import errors, fsutil

DEFAULT_MAX = 16 << 20
MIN_MAX, MAX_MAX = 64 << 10, 1 << 40
_MARKER_ROOM = 256  # the cut line is never longer than this
_COPY = 1 << 20
_READ = 64 << 10


class AgentLog:
    """One run's log file, never over `max_bytes` (see the module's doc)."""

    def __init__(self, path: Path, *, max_bytes: int = DEFAULT_MAX) -> None:
        if not MIN_MAX <= max_bytes <= MAX_MAX:
            raise ValueError(f"max_bytes {max_bytes} is out of range")
        fsutil.private_dir(path.parent)
        self.path = path
        self.max_bytes = max_bytes
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        self._end = os.fstat(self._fd).st_size  # the file's size
        self.written = self._end  # logical: every byte ever written, cut or not
        self.head = max_bytes // 4  # bytes kept from the start
        self._tail_room = max_bytes - self.head - _MARKER_ROOM
        self._kept_from: int | None = None  # logical offset where the kept tail starts
        self._marker = 0  # length of the cut line in the file
        self._lock = threading.Lock()
        self.closed = False

    @property
    def cut(self) -> int:
        """Bytes cut from the middle so far."""
        return 0 if self._kept_from is None else self._kept_from - self.head

    def size(self) -> int:
        return self._end

    # ------------------------------------------------------------------ writing

    def write(self, data: bytes) -> int:
        with self._lock:
            if self.closed or not data:
                return len(data)
            if self._end + len(data) <= self.max_bytes:
                self._pwrite(data, self._end)
                self._end += len(data)
                self.written += len(data)
                return len(data)
            self._cut_for(data)
            return len(data)

    def flush(self) -> None:
        """Nothing is buffered (kept for the file-like use in notes)."""

    def close(self) -> None:
        with self._lock:
            if not self.closed:
                self.closed = True
                os.close(self._fd)

    def _pwrite(self, data: bytes, at: int) -> None:
        view = memoryview(data)
        while view:
            done = os.pwrite(self._fd, view, at)
            view, at = view[done:], at + done

    def _file_pos(self, logical: int) -> int:
        if self._kept_from is None or logical < self.head:
            return logical
        return self.head + self._marker + (logical - self._kept_from)

    def _cut_for(self, data: bytes) -> None:
        """Write `data` with the oldest part of the tail cut, so the file stays in bounds."""
        if self._kept_from is None and self.written < self.head:  # fill the head first
            first = self.head - self.written
            self._pwrite(data[:first], self._end)
            self._end += first
            self.written += first
            data = data[first:]
        new_written = self.written + len(data)
        keep = self._tail_room // 2
        kept_from = max(new_written - keep, self._kept_from or self.head)
        marker = (
            f"\n[kanban] {kept_from - self.head:,} bytes of output cut here (the log keeps "
            f"its first {self.head:,} and its last bytes: max_log_bytes = {self.max_bytes:,})\n"
        ).encode()
        assert len(marker) <= _MARKER_ROOM
        dest = self.head + len(marker)
        # Move what stays of the old tail up behind the cut line, front to back.
        if kept_from < self.written:
            src, stop = self._file_pos(kept_from), self._end
            assert src > dest, (src, dest)
            step = min(_COPY, src - dest)
            while src < stop:
                chunk = os.pread(self._fd, min(step, stop - src), src)
                self._pwrite(chunk, dest)
                src, dest = src + len(chunk), dest + len(chunk)
        self._pwrite(marker, self.head)
        rest = data[max(0, kept_from - self.written) :]
        self._pwrite(rest, dest)
        dest += len(rest)
        os.ftruncate(self._fd, dest)
        self._end, self.written = dest, new_written
        self._kept_from, self._marker = kept_from, len(marker)

    # ------------------------------------------------------------------ reading

    def read(self, offset: int, size: int) -> tuple[bytes, int, int]:
        """Up to `size` bytes from logical `offset`: (bytes, the offset after them, bytes
        skipped because they were cut). Never reads the cut line as output."""
        with self._lock:
            if self.closed:
                return b"", offset, 0
            skipped = 0
            if self._kept_from is not None and self.head <= offset < self._kept_from:
                skipped, offset = self._kept_from - offset, self._kept_from
            limit = self.written - offset
            if self._kept_from is not None and offset < self.head:
                limit = self.head - offset
            data = os.pread(self._fd, max(0, min(size, limit)), self._file_pos(offset))
            return data, offset + len(data), skipped

    def file_pos(self, logical: int) -> int:
        """Where logical `logical` is in the file now (the start of the tail if it was cut)."""
        with self._lock:
            if self._kept_from is not None and self.head <= logical < self._kept_from:
                logical = self._kept_from
            return self._file_pos(logical)


class Pump(threading.Thread):
    """Copies the agent's output pipe into its `AgentLog`, 64 KiB at a time, until every
    writer of the pipe has closed it. `drain()` (after the agent exited) returns once all it
    wrote is in the log. A write the disk refuses (full) loses that chunk, counted in `lost`,
    and pumping goes on, so the agent never blocks on its output."""

    def __init__(self, fd: int, log: AgentLog) -> None:
        super().__init__(name="log-pump", daemon=True)
        self.fd, self.log = fd, log
        self.lost = 0
        self.eof = threading.Event()
        self._reading = threading.Lock()

    def run(self) -> None:
        while not self.eof.is_set():
            try:
                ready, _, _ = select.select([self.fd], [], [], 0.25)
            except (OSError, ValueError):
                break
            if ready:
                with self._reading:
                    self._read_once()
        self.eof.set()

    def _read_once(self) -> bool:
        """One read, if there is something (or the end): False once nothing is pending."""
        if self.eof.is_set() or self.fd < 0:
            return False
        try:
            ready, _, _ = select.select([self.fd], [], [], 0)
            if not ready:
                return False
            chunk = os.read(self.fd, _READ)
        except OSError:
            chunk = b""
        if not chunk:
            self.eof.set()
            return False
        try:
            self.log.write(chunk)
        except OSError:
            self.lost += len(chunk)
        return True

    def drain(self) -> None:
        """Everything the agent wrote before now is in the log (its writers may live on)."""
        with self._reading:
            while self._read_once():
                pass

    def stop(self, timeout: float = 2.0) -> None:
        """Wait a moment for the end of the pipe, then close our end of it."""
        self.join(timeout)
        self.eof.set()
        self.join(1.0)
        with self._reading:
            if self.fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(self.fd)
                self.fd = -1


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)\s*$", re.IGNORECASE)


def parse_size(value: object, *, what: str) -> int:
    """A size in bytes: 16777216, "16MiB", "16 MB", "512k" (k/M/G/T: powers of 1000; KiB…:
    of 1024). Out of 64 KiB to 1 TiB: refused, saying the range."""
    if isinstance(value, bool):
        value = str(value)
    if isinstance(value, int):
        number = value
    else:
        found = _SIZE.match(str(value))
        if found is None:
            raise errors.UsageError(
                f"{what} = {value!r} is not a size; give bytes or e.g. '16MiB', '100MB'"
            )
        unit = found.group(2).lower()
        base = 1024 if unit.endswith("ib") or unit.endswith("i") else 1000
        scale = base ** "bkmgt".index(unit[0]) if unit and unit[0] != "b" else 1
        number = int(float(found.group(1)) * scale)
    if not MIN_MAX <= number <= MAX_MAX:
        raise errors.UsageError(
            f"{what} = {value!r} is out of range: give 64KiB to 1TiB "
            f"(in .kanban/config.toml, KANBAN_{what.upper()} or a flag)"
        )
    return number
