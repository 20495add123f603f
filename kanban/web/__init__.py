"""The web board (`kanban serve`): pages, a JSON API and a live event stream over `api.Board`.

The web never writes rows itself: every action is an `api.Board` verb, the same the CLI calls.
"""

from kanban.web.app import create_app
from kanban.web.security import Access

__all__ = ["Access", "create_app"]
