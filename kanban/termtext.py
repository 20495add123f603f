"""Text from agents made safe for a person's terminal.

Agent text (summaries, block reasons, comments, errors, log lines) may carry escape
sequences that move the cursor, retitle the window, hide text or write hyperlinks. Wherever
such text is printed for a person it goes through `clean`: ANSI/VT escape and control
sequences are removed, other control characters (but newline and tab) become U+FFFD.
JSON output keeps the text as it was, escaped: `dumps` is json.dumps with every control
character written as a `\\uXXXX` escape (json does C0, ESC included, itself; DEL and the C1
range are done here), so a JSON reader gets the agent's text exactly and a terminal showing
the JSON gets no escape sequence.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
import re
from typing import Any, TypeVar

T = TypeVar("T")

# CSI (ESC [ ... final), OSC (ESC ] ... BEL or ST), DCS/SOS/PM/APC (ESC P|X|^|_ ... ST), the
# same introduced by their 8-bit C1 forms, and two-character escapes (ESC + one character).
_SEQUENCE = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"
    r"|(?:\x1b\]|\x9d).*?(?:\x07|\x1b\\|\x9c|$)"
    r"|(?:\x1b[PX^_]|[\x90\x98\x9e\x9f]).*?(?:\x1b\\|\x9c|$)"
    r"|\x1b[ -/]*[0-~]?",
    re.DOTALL,
)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_C1 = re.compile("[\x7f-\x9f]")


_C1_UTF8 = re.compile(rb"\x7f|\xc2[\x80-\x9f]")  # 0xc2 only ever leads a character


def escape_c1(text: bytes) -> bytes:
    """UTF-8 JSON `text` (C0 already escaped, as every encoder does) with DEL and the C1
    characters written as \\u escapes too."""
    if _C1_UTF8.search(text) is None:
        return text
    return _C1_UTF8.sub(lambda m: b"\\u%04x" % ord(m.group().decode()), text)


def dumps(value: Any, *, indent: int | None = None) -> str:
    """`value` as JSON text with no raw control character in it (the text kept, escaped)."""
    text = json.dumps(value, indent=indent, ensure_ascii=False, default=str)
    return _C1.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def clean(text: str | None) -> str:
    """`text` without escape sequences or control characters (newlines and tabs kept)."""
    if not text:
        return text or ""
    if text.isprintable():
        return text
    return _CONTROL.sub("\ufffd", _SEQUENCE.sub("", text.replace("\r\n", "\n")))


def clean_view(value: T) -> T:
    """A copy of `value` (a frozen view, or tuples, lists and dicts of them) with every
    string in it cleaned: what the CLI renders for a person."""
    if isinstance(value, str):
        return clean(value)  # type: ignore[return-value]
    if isinstance(value, tuple):
        return tuple(clean_view(v) for v in value)  # type: ignore[return-value]
    if isinstance(value, list):
        return [clean_view(v) for v in value]  # type: ignore[return-value]
    if isinstance(value, dict):
        return {k: clean_view(v) for k, v in value.items()}  # type: ignore[return-value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {
            f.name: clean_view(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if f.init and _textual(getattr(value, f.name))
        }
        return dataclasses.replace(value, **changes)
    return value


def _textual(value: object) -> bool:
    if isinstance(value, enum.Enum):
        return False
    return isinstance(value, str | tuple | list | dict) or (
        dataclasses.is_dataclass(value) and not isinstance(value, type)
    )


class CleanFormatter(logging.Formatter):
    """A log formatter for a person's terminal: agent text in messages is cleaned."""

    def format(self, record: logging.LogRecord) -> str:
        return clean(super().format(record))
