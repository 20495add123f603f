"""Notifications: tell a person when the board needs them, and never lose the message.

`kanban.board.outbox` holds subscriptions and the outbox (written in the transaction of the
change); this package renders events (`events`), sends them (`send`: webhooks over
`http.client`, command hooks as argv), and runs the dispatcher's delivery loop (`courier`),
outside the tick's lock. `subscriptions` checks what `kanban notify add` is given.
"""
