"""The Python API: `open_board(path_or_url)` returns a `Board`.

Each method is one transaction (writes take SQLite's lock up front), retried on transient
database errors, and wakes a local dispatcher after commit when it changed what could run.
Cards are verbs of the board (`board.add`, `board.claim`...); goals and schedules hang off it
in the same style (`board.goals.add(...)`, `board.schedules.add(...)`). The transaction runner
underneath is `board.tx` (`kanban.db.Transactions`), for code that calls `kanban.board` verbs.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Connection, Engine

from kanban import board, clock, db, errors, settings, views
from kanban.states import CardStatus, RunOutcome, parse_status

if TYPE_CHECKING:
    from kanban import goals, schedules

StatusFilter = str | CardStatus | Iterable[str | CardStatus] | None


class Board:
    """A board: cards, their dependencies, runs, events and comments."""

    def __init__(self, engine: Engine, config: settings.Settings) -> None:
        self.engine = engine
        self.settings = config
        self.backoff = board.Backoff(base=config.backoff_base, cap=config.backoff_cap)
        # The transaction runner (kanban.db): the engine room, not part of this facade's verbs.
        self.tx = db.Transactions(engine, url=config.db_url)

    # Goals and schedules, in the same style as the card verbs: `board.goals.add(...)`; made
    # on first use, so a command about cards never imports them (start-up time).

    @functools.cached_property
    def goals(self) -> goals.Goals:
        from kanban import goals

        return goals.Goals(self.tx, self.settings)

    @functools.cached_property
    def schedules(self) -> schedules.Schedules:
        from kanban import schedules

        return schedules.Schedules(self.tx, self.settings)

    # ------------------------------------------------------------------ plumbing

    @property
    def url(self) -> str:
        return self.settings.db_url

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Board:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    if not TYPE_CHECKING:  # (mypy keeps refusing unknown attributes)

        def __getattr__(self, name: str) -> Any:
            if name in ("write", "read"):
                raise AttributeError(
                    f"Board.{name} moved to the transaction runner: use board.tx.{name}(...) "
                    "(kanban.db.Transactions)"
                )
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def actor(self) -> str:
        return self.settings.actor

    # ------------------------------------------------------------------ cards

    def add(
        self,
        title: str,
        *,
        body: str = "",
        profile: str | None = None,
        parents: Sequence[int] = (),
        priority: int = 0,
        paths: Sequence[str] | None = None,
        max_attempts: int | None = None,
        timeout: float | str | None = None,
        key: str | None = None,
        review: bool = False,
        triage: bool = False,
        max_cost_usd: float | None = None,
        model: str | None = None,
        agent_args: Sequence[str] = (),
        agent_env: Mapping[str, str] | None = None,
    ) -> views.CardView:
        """Add a card: `ready` with no unfinished parents, else `todo` (`triage` if asked).
        `max_cost_usd` caps what all of its runs may cost together; `model`, `agent_args`
        and `agent_env` are per-card choices its profile must allow."""
        seconds = None if timeout is None else clock.parse_duration(timeout, what="timeout")
        choices = self._choices(profile, model, agent_args, agent_env or {})

        def add(c: Connection) -> tuple[views.CardView, bool]:
            added = board.add_card(
                c,
                title=title,
                body=body,
                profile=profile,
                parents=parents,
                priority=priority,
                paths=paths,
                max_attempts=max_attempts,
                timeout=seconds,
                key=key,
                review=review,
                triage=triage,
                max_cost_usd=max_cost_usd,
                actor=self.actor,
                now=clock.now(),
            )
            if choices is None or not added[1]:
                return added
            return board.set_agent_choices(
                c, card_id=added[0].id, now=clock.now(), actor=self.actor, **choices
            ), True

        card, _created = self.tx.write(add, wake_dispatcher=True)
        return card

    def set_agent_choices(
        self,
        card_id: int,
        *,
        model: str | None = None,
        agent_args: Sequence[str] = (),
        agent_env: Mapping[str, str] | None = None,
    ) -> views.CardView:
        """Set the model, extra arguments and variables of a card's next attempts (checked
        against its profile; a running attempt keeps what it started with)."""
        card = self.get(card_id)
        choices = self._choices(card.profile, model, agent_args, agent_env or {}) or {
            "model": None,
            "args": (),
            "env": {},
        }
        return self.tx.write(
            lambda c: board.set_agent_choices(
                c, card_id=card_id, now=clock.now(), actor=self.actor, **choices
            )
        )

    def check_agent_choices(
        self,
        profile: str | None,
        model: str | None,
        args: Sequence[str],
        env: Mapping[str, str],
    ) -> None:
        """Refuse per-card choices the card's profile does not allow (ProfileError)."""
        self._choices(profile, model, args, env)

    def _choices(
        self,
        profile: str | None,
        model: str | None,
        args: Sequence[str],
        env: Mapping[str, str],
    ) -> dict[str, Any] | None:
        """Per-card choices checked against the profile, read before any transaction."""
        if model is None and not args and not env:
            return None
        if profile is None:
            raise errors.UsageError(
                "a model, --arg or --env needs a profile that allows it: add --profile NAME"
            )
        from kanban import profiles

        loaded = profiles.load(profile, repo=self.settings.repo)
        loaded.check_card_choices(model=model, args=args, env=env)
        return {"model": model, "args": tuple(args), "env": dict(env)}

    def set_cost_cap(self, card_id: int, max_cost_usd: float | None) -> views.CardView:
        """Cap what all of a card's runs may cost together (None removes the cap)."""
        return self.tx.write(
            lambda c: board.set_cost_cap(
                c, card_id=card_id, max_cost_usd=max_cost_usd, now=clock.now(), actor=self.actor
            )
        )

    def spend(
        self, *, card_ids: list[int] | None = None, since: dt.datetime | None = None
    ) -> views.Spend:
        """Tokens and cost of the runs of `card_ids` (all cards by default) ended since `since`."""
        return self.tx.read(lambda c: board.spend(c, card_ids=card_ids, since=since))

    def link(self, parent: int, child: int) -> bool:
        """`child` waits for `parent`. Refuses a cycle (CycleError names it)."""
        return self.tx.write(
            lambda c: board.link(c, parent=parent, child=child, now=clock.now(), actor=self.actor),
            wake_dispatcher=True,
        )

    def unlink(self, parent: int, child: int) -> None:
        self.tx.write(
            lambda c: board.unlink(
                c, parent=parent, child=child, now=clock.now(), actor=self.actor
            ),
            wake_dispatcher=True,
        )

    def get(self, card_id: int) -> views.CardView:
        return self.tx.read(lambda c: board.get_card(c, card_id))

    def cards(
        self,
        status: StatusFilter = None,
        *,
        profile: str | None = None,
        parent: int | None = None,
        search: str | None = None,
        include_archived: bool = False,
        limit: int | None = None,
    ) -> list[views.CardView]:
        statuses = _statuses(status)
        return self.tx.read(
            lambda c: board.list_cards(
                c,
                statuses=statuses,
                profile=profile,
                parent=parent,
                search=search,
                include_archived=include_archived,
                limit=limit,
            )
        )

    def show(self, card_id: int) -> views.CardDetail:
        return self.tx.read(lambda c: board.card_detail(c, card_id))

    def runs(self, card_id: int) -> list[views.RunView]:
        return self.tx.read(lambda c: board.runs_of(c, card_id))

    def comment(self, card_id: int, body: str, *, author: str | None = None) -> views.CommentView:
        return self.tx.write(
            lambda c: board.comment(
                c, card_id=card_id, body=body, now=clock.now(), author=author or self.actor
            )
        )

    def status(self) -> views.BoardStatus:
        return self.tx.read(lambda c: board.status_summary(c, now=clock.now()))

    # ------------------------------------------------------------------ leases

    def claim(
        self,
        *,
        profile: str | None = None,
        worker: str | None = None,
        ttl: float | str | None = None,
        card_id: int | None = None,
    ) -> views.Claim | None:
        """Claim the best ready card (or `card_id`); None when nothing is ready."""
        seconds = self.settings.lease_ttl if ttl is None else clock.parse_duration(ttl, what="ttl")
        if seconds <= 0:
            raise errors.UsageError("ttl must be more than 0 seconds")
        return self.tx.write(
            lambda c: board.claim(
                c,
                now=clock.now(),
                host=self.settings.host_id,
                ttl=seconds,
                worker=worker or self.actor,
                profile=profile,
                card_id=card_id,
                default_max_attempts=self.settings.max_attempts,
            )
        )

    def heartbeat(self, card_id: int, *, token: str) -> views.RunView:
        """Renew the lease. Raises LeaseLost when the run is no longer current."""
        return self.tx.write(
            lambda c: board.heartbeat(
                c, card_id=card_id, token=token, ttl=self.settings.lease_ttl, now=clock.now()
            )
        )

    def complete(
        self, card_id: int, *, token: str | None = None, summary: str | None = None
    ) -> views.CardView:
        """With a token: the run is done. Without: a person marks the card done."""
        if token is None:
            return self._move(card_id, CardStatus.DONE, summary=summary)
        return self.end_run(card_id, token=token, outcome=RunOutcome.DONE, summary=summary)

    def block(self, card_id: int, *, reason: str, token: str | None = None) -> views.CardView:
        """The card needs a person; `reason` says why."""
        reason = _require(reason, "a reason (--reason) saying what a person must do")
        if token is None:
            return self._move(card_id, CardStatus.BLOCKED, reason=reason)
        return self.end_run(card_id, token=token, outcome=RunOutcome.BLOCKED, error=reason)

    def fail(self, card_id: int, *, error: str, token: str | None = None) -> views.CardView:
        """With a token: a failed attempt (retried with backoff, then blocked). Without: give up."""
        error = _require(error, "an error (--error) saying what went wrong")
        if token is None:
            return self._move(card_id, CardStatus.FAILED, reason=error)
        return self.end_run(card_id, token=token, outcome=RunOutcome.FAILED, error=error)

    def end_run(
        self,
        card_id: int,
        *,
        token: str,
        outcome: RunOutcome | None = None,
        summary: str | None = None,
        error: str | None = None,
        exit_code: int | None = None,
        retry_after: float | None = None,
        result: views.RunResult | None = None,
    ) -> views.CardView:
        """End the run holding `token`: with `result` (a `RunResult`), or with `outcome` and
        its details. A goal's planner or judge delivers its plan or verdict, read and checked
        before the transaction; one that does not validate is refused (PlanError) and
        changes nothing, so the agent can fix its file and report again."""
        if result is None:
            if outcome is None:
                raise errors.UsageError("end_run needs an outcome or a result")
            result = views.RunResult(
                outcome,
                summary=summary,
                error=error,
                exit_code=exit_code,
                retry_after=retry_after,
            )
        if result.outcome is RunOutcome.DONE:  # a plan or verdict is read before the write
            card, live = self.tx.read(
                lambda c: (board.get_card(c, card_id), board.live_run_of(c, card_id, token=token))
            )
            if live is not None:  # (none: the write below says what became of the run)
                from kanban import goals

                result = goals.with_delivery(self.settings, card, live.id, result)
        final = result

        def end(c: Connection) -> views.CardView:
            board.end_run(
                c,
                card_id=card_id,
                token=token,
                result=final,
                now=clock.now(),
                backoff=self.backoff,
                actor=self.actor,
                refuse_bad_delivery=True,
            )
            return board.get_card(c, card_id)

        return self.tx.write(end, wake_dispatcher=True)

    def reclaim_expired(self, *, now: dt.datetime | None = None) -> list[views.RunEnd]:
        """Requeue every card whose run's lease expired (no heartbeat within the TTL)."""
        return self.tx.write(
            lambda c: board.reclaim_expired(
                c, now=now or clock.now(), backoff=self.backoff, actor=self.actor
            ),
            wake_dispatcher=True,
        )

    # ------------------------------------------------------------------ a person's moves

    def unblock(self, card_id: int, *, note: str | None = None) -> views.CardView:
        """blocked -> ready (or todo), with a fresh attempt budget; `note` becomes a comment."""
        return self._move(
            card_id, CardStatus.READY, require={CardStatus.BLOCKED}, note=note, reset_attempts=True
        )

    def retry(self, card_id: int, *, note: str | None = None) -> views.CardView:
        """Run it again (from failed, blocked, cancelled, review or triage) with a fresh budget."""
        return self._move(
            card_id,
            CardStatus.READY,
            note=note,
            reset_attempts=True,
            require={
                CardStatus.FAILED,
                CardStatus.BLOCKED,
                CardStatus.CANCELLED,
                CardStatus.REVIEW,
                CardStatus.TRIAGE,
            },
        )

    def cancel(self, card_id: int, *, reason: str | None = None) -> views.CardView:
        return self._move(card_id, CardStatus.CANCELLED, reason=reason)

    def archive(self, card_id: int) -> views.CardView:
        return self._move(card_id, CardStatus.ARCHIVED)

    def _move(
        self,
        card_id: int,
        to: CardStatus,
        *,
        require: set[CardStatus] | None = None,
        note: str | None = None,
        **kwargs: Any,
    ) -> views.CardView:
        def move(c: Connection) -> views.CardView:
            if require is not None:
                current = board.get_card(c, card_id).status
                if current not in require:
                    allowed = " or ".join(sorted(require))
                    raise errors.InvalidTransition(
                        f"card {card_id} is {current}; this applies only to {allowed} cards"
                    )
            if note:
                board.comment(c, card_id=card_id, body=note, now=clock.now(), author=self.actor)
            return board.move(
                c, card_id=card_id, to=to, now=clock.now(), actor=self.actor, **kwargs
            )

        return self.tx.write(move, wake_dispatcher=True)


def _require(text: str | None, what: str) -> str:
    if text is None or not text.strip():
        raise errors.UsageError(f"give {what}")
    return text.strip()


def _statuses(status: StatusFilter) -> list[CardStatus] | None:
    if status is None:
        return None
    if isinstance(status, str | CardStatus):
        status = [status]
    return [parse_status(s) if isinstance(s, str) else s for s in status]


def _no_board(where: str, init: str) -> errors.BoardNotFound:
    return errors.BoardNotFound(
        f"no board at {where}: nothing there is a kanban board, and only `kanban init` creates "
        f"one. Create it with `{init}`, or point --db / KANBAN_DB (or `db` in "
        ".kanban/config.toml) at the board you meant"
    )


def open_board(
    path_or_url: str | os.PathLike[str] | None = None,
    *,
    cwd: Path | None = None,
    **overrides: Any,
) -> Board:
    """Open (creating or upgrading as needed) the board at `path_or_url`, or the one found
    by walking up from the current directory to `.kanban/`."""
    if path_or_url is not None:
        overrides["db"] = os.fspath(path_or_url)
    config = settings.load(overrides, cwd=cwd)
    return connect(config)


def connect(config: settings.Settings, *, create: bool = True) -> Board:
    """Open the board `config` names (upgrading an older one). Only with `create` does a
    missing board become a new one: commands other than `kanban init` pass False, so that a
    mistyped --db or KANBAN_DB is an error saying where it looked, not an empty new board."""
    path = db.sqlite_path(config.db_url)
    if path is not None and not db.check_sqlite_file(path):
        if not create:
            raise _no_board(str(path), f"kanban --db {path} init")
        if not path.exists():
            db.create_sqlite_file(path)
    engine = db.create_engine(config.db_url)
    try:
        if path is None:
            db.check_reachable(engine)  # one clear line if not; reads the server's clock
        if path is None and not create and db.guard(lambda: db.read_version(engine)) is None:
            where = db.redact(config.db_url)
            raise _no_board(where, f"kanban --db '{where}' init")
        db.guard(lambda: db.prepare(engine))
    except BaseException:
        engine.dispose()
        raise
    return Board(engine, config)
