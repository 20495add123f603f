"""Migrations: `alembic upgrade head` gives exactly the models' schema; older boards upgrade
on open; newer boards are refused without being touched."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

import kanban
from kanban import db, models

ROOT = Path(__file__).resolve().parent.parent


def _revisions() -> list[str]:
    script = ScriptDirectory.from_config(db.alembic_config())
    return [r.revision for r in reversed(list(script.walk_revisions()))]


def _indexes(path: Path) -> set[tuple[object, ...]]:
    """(table, name, unique, partial, ((column, desc), ...)) for every index SQLite has."""
    con = sqlite3.connect(path)
    found = set()
    tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    for table in tables:
        if table == "alembic_version":
            continue
        for _seq, name, unique, origin, partial in con.execute(f"PRAGMA index_list('{table}')"):
            cols = tuple(
                (row[2], row[3])
                for row in con.execute(f"PRAGMA index_xinfo('{name}')")
                if row[5]  # key columns only
            )
            found.add((table, name if origin == "c" else origin, unique, partial, cols))
    con.close()
    return found


def test_schema_head_constant_matches_the_migrations() -> None:
    assert _revisions()[-1] == db.SCHEMA_HEAD


def test_alembic_upgrade_head_from_empty_gives_exactly_the_models(tmp_path: Path) -> None:
    migrated = tmp_path / "migrated.db"
    subprocess.run(
        [sys.executable, "-m", "alembic", "-x", f"db={migrated}", "upgrade", "head"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    engine = db.create_engine(db.resolve_url(migrated))
    with engine.connect() as conn, warnings.catch_warnings():
        # SQLite cannot reflect the DESC index; _indexes() compares it below instead.
        warnings.filterwarnings("ignore", message=".*expression-based index.*")
        diff = compare_metadata(MigrationContext.configure(conn), models.metadata)
    engine.dispose()
    # Alembic cannot match the DESC index it cannot reflect; _indexes() compares it below.
    diff = [
        d
        for d in diff
        if not (
            d[0] in ("add_index", "remove_index")
            and d[1].name in ("ix_cards_queue", "ix_cards_profile_queue")
        )
    ]
    assert diff == [], diff

    created = tmp_path / "created.db"
    engine = db.create_engine(db.resolve_url(created))
    models.metadata.create_all(engine)
    engine.dispose()
    assert _indexes(migrated) == _indexes(created)


@pytest.mark.parametrize("start", _revisions())
def test_a_board_at_any_revision_upgrades_on_open_and_keeps_its_cards(
    tmp_path: Path, start: str
) -> None:
    path = tmp_path / "old.db"
    db.create_sqlite_file(path)
    engine = db.create_engine(db.resolve_url(path))
    db.upgrade(engine, start)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO cards (title, body, status, priority, review, attempts, created_at, "
            "updated_at, ready_at) VALUES ('old card', '', 'ready', 0, 0, 0, "
            "'2026-01-01 00:00:00', '2026-01-01 00:00:00', '2026-01-01 00:00:00')"
        )
    engine.dispose()
    with kanban.open_board(str(path)) as board:
        assert db.read_version(board.engine) == db.SCHEMA_HEAD
        assert [c.title for c in board.cards()] == ["old card"]
        claim = board.claim()
        assert claim is not None
        board.complete(claim.card_id, token=claim.token)


def test_a_newer_board_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "newer.db"
    kanban.open_board(str(path)).close()
    con = sqlite3.connect(path)
    con.execute("UPDATE alembic_version SET version_num = '9999'")
    con.commit()
    con.close()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(kanban.SchemaError, match="newer than this kanban"):
        kanban.open_board(str(path))
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest


def test_downgrade_to_base_and_back(tmp_path: Path) -> None:
    from alembic import command

    path = tmp_path / "roundtrip.db"
    url = db.resolve_url(path)
    kanban.open_board(str(path)).close()
    cfg = db.alembic_config(url)
    command.downgrade(cfg, "base")
    engine = db.create_engine(url)
    with engine.connect() as conn:
        assert set(sa.inspect(conn).get_table_names()) == {"alembic_version"}
    engine.dispose()
    kanban.open_board(str(path)).close()
