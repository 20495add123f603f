"""What only PostgreSQL has: its migrations, refusing a database that is not a board,
LISTEN/NOTIFY wake-ups (and their reconnection), the claim statement it runs. Everything
else runs on both backends through the `backend` fixture."""

from __future__ import annotations

import subprocess
import sys
import threading
import warnings
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

import kanban
from kanban import board as verbs
from kanban import clock, db, models, wake
from kanban.testing import git, wait_for

pytestmark = pytest.mark.postgres


def test_postgresql_urls_use_psycopg_3() -> None:
    assert db.resolve_url("postgresql://u@h/d") == "postgresql+psycopg://u@h/d"
    assert db.resolve_url("postgres://u@h/d") == "postgresql+psycopg://u@h/d"


def test_migrations_give_exactly_the_models(shared_postgres_url: str) -> None:
    with kanban.open_board(shared_postgres_url) as b:
        assert db.read_version(b.engine) == db.SCHEMA_HEAD
        with b.engine.connect() as conn, warnings.catch_warnings():
            warnings.simplefilter("ignore", sa.exc.SAWarning)
            diff = compare_metadata(MigrationContext.configure(conn), models.metadata)
    assert diff == [], diff


def _revisions() -> list[str]:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(db.alembic_config())
    return [r.revision for r in reversed(list(script.walk_revisions()))]


@pytest.mark.parametrize("start", _revisions())
def test_a_board_at_any_revision_upgrades_on_open_and_keeps_its_cards(
    shared_postgres_url: str, start: str
) -> None:
    engine = db.create_engine(db.resolve_url(shared_postgres_url))
    db.upgrade(engine, start)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO cards (title, body, status, priority, review, attempts, created_at, "
            "updated_at, ready_at) VALUES ('old card', '', 'ready', 0, false, 0, "
            "'2026-01-01 00:00:00', '2026-01-01 00:00:00', '2026-01-01 00:00:00')"
        )
    engine.dispose()
    with kanban.open_board(shared_postgres_url) as b:
        assert db.read_version(b.engine) == db.SCHEMA_HEAD
        assert [c.title for c in b.cards()] == ["old card"]
        claim = b.claim()
        assert claim is not None
        b.complete(claim.card_id, token=claim.token)
        assert b.add("new card").id == 2  # the id sequence survived the upgrade


def test_downgrade_to_base_and_back(shared_postgres_url: str) -> None:
    from alembic import command

    kanban.open_board(shared_postgres_url).close()
    command.downgrade(db.alembic_config(db.resolve_url(shared_postgres_url)), "base")
    engine = db.create_engine(db.resolve_url(shared_postgres_url))
    with engine.connect() as conn:
        assert set(sa.inspect(conn).get_table_names()) == {"alembic_version"}
    engine.dispose()
    with kanban.open_board(shared_postgres_url) as b:
        assert db.read_version(b.engine) == db.SCHEMA_HEAD


def test_a_database_that_is_not_a_board_is_refused_and_left_untouched(
    shared_postgres_url: str,
) -> None:
    engine = db.create_engine(db.resolve_url(shared_postgres_url))
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE invoices (id integer PRIMARY KEY)")
    with pytest.raises(kanban.SchemaError, match=r"not a kanban board.*invoices"):
        kanban.open_board(shared_postgres_url)
    with engine.connect() as conn:
        assert sa.inspect(conn).get_table_names() == ["invoices"]
    engine.dispose()


def test_a_newer_board_is_refused(shared_postgres_url: str) -> None:
    kanban.open_board(shared_postgres_url).close()
    engine = db.create_engine(db.resolve_url(shared_postgres_url))
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    engine.dispose()
    with pytest.raises(kanban.SchemaError, match="newer than this kanban"):
        kanban.open_board(shared_postgres_url)


def test_the_claim_locks_its_row_with_skip_locked_in_a_cte(shared_postgres_url: str) -> None:
    with kanban.open_board(shared_postgres_url) as b:
        b.add("one")
        statements: list[str] = []
        sa.event.listen(
            b.engine, "before_cursor_execute", lambda *a: statements.append(a[2]), named=False
        )
        assert b.claim() is not None
    claim = next(s for s in statements if "UPDATE cards" in s)
    assert claim.startswith("WITH pick AS") and "FOR UPDATE OF cards SKIP LOCKED" in claim


def test_a_write_wakes_a_listening_dispatcher_and_a_lost_listener_reconnects(
    shared_postgres_url: str,
) -> None:
    with kanban.open_board(shared_postgres_url) as b:
        listener = wake.listen(b.engine)
        assert isinstance(listener, wake.PgListener)
        try:
            assert listener.wait(0.05) is False
            b.add("wake up")  # NOTIFY inside the write, delivered on commit
            assert listener.wait(5) is True
            b.tx.write(lambda c: verbs.comment(c, card_id=1, body="no wake", now=clock.now()))
            assert listener.wait(0.05) is False  # only writes that change what can run wake
            backend = listener.conn.info.backend_pid
            with b.engine.begin() as conn:
                conn.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": backend})
            assert listener.wait(0.05) is False  # notices the loss, reconnects next time
            assert listener.wait(0.05) is True  # reconnected: tick, changes may have been missed
            b.add("again")
            assert listener.wait(5) is True
        finally:
            listener.close()


def test_init_with_a_shared_board_makes_the_clone_remember_it(
    shared_postgres_url: str, repo: Path
) -> None:
    def kanban_here(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "kanban", *args],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    made = kanban_here("--db", shared_postgres_url, "init")
    assert made.returncode == 0, made.stderr
    config = repo / ".kanban" / "config.toml"
    assert (config.stat().st_mode & 0o777) == 0o600
    assert kanban_here("--db", shared_postgres_url, "init").returncode == 0  # harmless again
    assert config.read_text().count("db = ") == 1
    added = kanban_here("add", "found through the config")  # no --db: the clone knows
    assert added.returncode == 0, added.stderr
    with kanban.open_board(shared_postgres_url) as b:
        assert [c.title for c in b.cards()] == ["found through the config"]
    assert git(repo, "status", "--porcelain") == ""  # .kanban/ stays out of git status


def test_the_candidate_query_walks_the_queue_index_without_sorting(
    shared_postgres_url: str,
) -> None:
    """The tick's candidate query sorts on (priority, ready_at, id): the queue index ends in
    `id` (migration 0007), so PostgreSQL reads the first rows in order and stops, instead of
    sorting every ready card of the profile (40 ms a tick at 100,000 cards before)."""
    from kanban.models import cards

    now = clock.now()
    with kanban.open_board(shared_postgres_url) as b:
        rows = [
            {
                "title": f"card {i}",
                "body": "",
                "status": "ready",
                "profile": "p",
                "priority": 0,
                "review": False,
                "attempts": 0,
                "created_at": now,
                "updated_at": now,
                "ready_at": now,  # ties everywhere: only `id` orders them
            }
            for i in range(5000)
        ]
        b.tx.write(lambda c: c.execute(sa.insert(cards), rows))
        with b.engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE cards")
            seen: list[tuple[str, object]] = []
            sa.event.listen(
                conn, "before_cursor_execute", lambda *a: seen.append((a[2], a[3])), named=False
            )
            got = verbs.ready_candidates(conn, now=clock.now(), profile="p", limit=12)
            statement, params = seen[0]
            plan = "\n".join(
                r[0]
                for r in conn.exec_driver_sql("EXPLAIN " + statement, params)  # type: ignore[arg-type]
            )
    assert [c.id for c in got] == sorted(c.id for c in got)[:12]
    assert "ix_cards_profile_queue" in plan or "ix_cards_queue" in plan, plan
    assert "Sort" not in plan, plan


def test_a_host_frozen_inside_a_transaction_holds_no_row_past_the_idle_timeout(
    shared_postgres_url: str,
) -> None:
    """A host stopped between two statements of a transaction (SIGSTOP, a paused VM, a
    partition) keeps its row locks until its session ends: the other hosts' reclaim of its
    runs, and so their whole tick, would wait for ever (tests/test_several_hosts.py froze a
    supervisor inside its heartbeat and the other host's drain hung). The server ends such a
    session after db.IDLE_IN_TRANSACTION_TIMEOUT_S, and the reclaim goes through."""
    with kanban.open_board(shared_postgres_url) as b:
        b.add("held")
        claim = b.claim(ttl=1)
        assert claim is not None
        frozen = b.engine.connect()  # a kanban connection, as the frozen host's supervisor has
        frozen.begin()
        frozen.execute(
            sa.text("UPDATE runs SET heartbeat_at = heartbeat_at WHERE id = :r"),
            {"r": claim.run_id},
        )  # ... and then nothing: no statement, no commit
        wait_for(
            lambda: b.tx.read(lambda c: verbs.expired_runs(c, now=clock.now())),
            timeout=30,
            what="the lease to expire",
        )
        ended: list[int] = []

        def reclaim() -> None:
            found = b.tx.write(
                lambda c: verbs.reclaim_expired(c, now=clock.now(), backoff=b.backoff)
            )
            ended.extend(e.run.id for e in found)

        other_host = threading.Thread(target=reclaim, daemon=True)
        other_host.start()
        other_host.join(timeout=db.IDLE_IN_TRANSACTION_TIMEOUT_S + 120)
        assert ended == [claim.run_id], "the reclaim waited behind the frozen transaction"
        assert b.get(claim.card_id).status == "ready"
        with pytest.raises(sa.exc.DBAPIError):  # the server ended the frozen session
            frozen.execute(sa.text("SELECT 1"))
        frozen.invalidate()
        frozen.close()


def test_reads_spend_no_round_trip_on_begin_commit_or_a_ping(shared_postgres_url: str) -> None:
    """The tick's cost on PostgreSQL is round trips, not the server's work: reads run in
    autocommit (no BEGIN or COMMIT; READ COMMITTED gives each statement its own snapshot
    either way), writes in a transaction, and a pooled connection used a moment ago is not
    pinged again at checkout (db.PING_AFTER_IDLE_S)."""
    with kanban.open_board(shared_postgres_url) as b:
        assert b.tx.read(lambda c: c.connection.dbapi_connection.autocommit) is True
        assert b.tx.write(lambda c: c.connection.dbapi_connection.autocommit) is False
        pings: list[object] = []
        ping = b.engine.dialect.do_ping
        b.engine.dialect.do_ping = lambda conn: pings.append(conn) or ping(conn)  # type: ignore[method-assign]
        for _ in range(5):
            assert b.tx.read(lambda c: c.exec_driver_sql("SELECT 1").scalar()) == 1
        assert len(pings) < 5, "every checkout pinged its connection"
