"""Consumer requests: ``CONSUMER.*`` (create, info, list, names, delete, MSG.NEXT)."""

from __future__ import annotations
