"""The trivial agent both sides run: note the start, optionally wait, finish, note the end.

    python bench/trivial_agent.py --log FILE CARD                  # ours: exit 0 means done
    python bench/trivial_agent.py --log FILE --hermes-db DB CARD   # Hermes: completes it itself

Times go to FILE as JSON lines ({"card", "start"} then {"card", "done", "cpu"}: its own CPU
seconds), appended whole.
"""

from __future__ import annotations

import argparse
import json
import os
import time


def note(log: str, **row: object) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(row) + "\n").encode())
    finally:
        os.close(fd)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("card")
    parser.add_argument("--log", required=True)
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("--hermes-db")
    parser.add_argument("--hermes-nocheck", action="store_true")
    args = parser.parse_args()
    note(args.log, card=args.card, start=time.time())
    if args.sleep:
        time.sleep(args.sleep)
    if args.hermes_db:
        from pathlib import Path

        from hermes_cli import kanban_db

        if args.hermes_nocheck:  # see bench/hermes.py: nocheck
            kanban_db._check_file_length_invariant = lambda conn: None
        try:
            conn = kanban_db.connect(Path(args.hermes_db))
            try:
                kanban_db.complete_task(conn, args.card, result="bench agent: done")
            finally:
                conn.close()
        except Exception as exc:  # counted by the harness: Hermes' own failures are a figure
            note(args.log, card=args.card, error=f"{type(exc).__name__}: {exc}"[:200])
            return 1
    own = os.times()
    note(args.log, card=args.card, done=time.time(), cpu=own.user + own.system)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
