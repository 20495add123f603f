"""`kanban serve`: the web board over HTTP (see docs/howto/web.md)."""

from __future__ import annotations

from pathlib import Path

import click

from kanban.cli._common import State, pass_state


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8700, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A file holding the token every request must carry (else $KANBAN_WEB_TOKEN).",
)
@click.option("--read-only", is_flag=True, help="Show the board; refuse every change.")
@pass_state
def serve(state: State, host: str, port: int, token_file: Path | None, read_only: bool) -> None:
    """Serve the board as a live web page and a JSON API (/api/, described at
    /api/openapi.json). Loopback only unless a token is set.

    \b
    Examples:
      kanban serve                      # http://127.0.0.1:8700
      KANBAN_WEB_TOKEN=$(cat ~/.kanban-token) kanban serve --host 0.0.0.0
    """
    import uvicorn

    from kanban import web
    from kanban.web import security

    token = security.load_token(token_file=token_file)
    security.check_bind(host, token)
    board = state.board()
    app = web.create_app(board, access=security.Access(token=token, read_only=read_only))
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"kanban: serving {board.url} at http://{shown}:{port}/ (Ctrl-C stops)", err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=2)


COMMANDS = [serve]
