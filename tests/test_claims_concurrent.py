"""Invariant 1, one winner per claim: eight processes draining 500 ready cards (SQLite:
BEGIN IMMEDIATE and one conditional UPDATE; PostgreSQL: FOR UPDATE SKIP LOCKED)."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest
import sqlalchemy as sa

import kanban
from kanban.testing import claim_until_empty

CARDS = 500
CLAIMERS = 8


@pytest.mark.slow
@pytest.mark.parametrize("complete", [False, True], ids=["claim", "claim+complete"])
def test_eight_processes_claim_every_card_exactly_once(
    tmp_path: Path, board_url: str, complete: bool
) -> None:
    db = board_url
    with kanban.open_board(db) as board:
        board.status()  # the board exists before the claimers start
        for i in range(CARDS):
            board.add(f"card {i}")
    go = tmp_path / "go"
    ctx = multiprocessing.get_context("spawn")
    outs = [tmp_path / f"claims-{i}.jsonl" for i in range(CLAIMERS)]
    procs = [
        ctx.Process(target=claim_until_empty, args=(db, f"w{i}", str(out), str(go), complete))
        for i, out in enumerate(outs)
    ]
    for p in procs:
        p.start()
    go.touch()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    claims = [json.loads(line) for out in outs for line in out.read_text().splitlines()]
    card_ids = [c["card"] for c in claims]
    assert len(card_ids) == len(set(card_ids)), "a card was handed to two claimers"
    assert sorted(card_ids) == list(range(1, CARDS + 1)), "a card was never claimed"
    assert len({c["worker"] for c in claims}) > 1, "only one process ever won; no contention tested"
    with kanban.open_board(db) as board, board.engine.connect() as conn:
        runs_per_card = conn.execute(
            sa.text("SELECT card_id, count(*) FROM runs GROUP BY card_id HAVING count(*) > 1")
        ).all()
        assert runs_per_card == []
        status = board.status().counts
    assert status["done" if complete else "running"] == CARDS
