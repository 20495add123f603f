"""The signature snippet in docs/howto/notifications.md verifies a real delivery."""

from __future__ import annotations

import re
from pathlib import Path

import kanban
from kanban import clock
from kanban.board import subscriptions
from kanban.notify import courier
from kanban.testing import Receiver

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "howto" / "notifications.md"


def _snippet() -> str:
    [code] = [
        block
        for block in re.findall(r"```python\n(.*?)```", GUIDE.read_text(), flags=re.S)
        if "def verify_signature" in block
    ]
    return str(code)


def test_the_documented_snippet_verifies_a_real_signed_delivery(tmp_path: Path) -> None:
    namespace: dict[str, object] = {}
    exec(compile(_snippet(), str(GUIDE), "exec"), namespace)  # our own docs
    verify = namespace["verify_signature"]
    receiver = Receiver()
    try:
        with kanban.open_board(tmp_path / "board.db") as b:
            b.tx.write(
                lambda c: subscriptions.add_subscription(
                    c, name="r", url=receiver.url, secret_env="S", format="json", now=clock.now()
                )
            )
            card = b.add("Card", profile="demo")
            b.block(card.id, reason="?")
            courier.Courier(b, name="t", environ={"S": "the secret"}).deliver_due()
        [(headers, body, _)] = receiver.requests
    finally:
        receiver.close()
    assert verify("the secret", body, headers["Kanban-Signature"]) is True  # type: ignore[operator]
    assert verify("the secret", body + b" ", headers["Kanban-Signature"]) is False  # type: ignore[operator]
    assert verify("another", body, headers["Kanban-Signature"]) is False  # type: ignore[operator]
