"""Compiled subject filters with a verdict cache per subject id.

Owns ``SubjectFilter`` (what consumers, purges and reads match subjects with),
``_as_filter`` (an API's optional subject argument to a filter) and ``_CACHE_TRIM``, the
size past which the store's per-subject caches are cleared.
"""

from __future__ import annotations

from .match import compile_filters, is_literal

_CACHE_TRIM = 65536  # trim per-subject caches past this many entries


class SubjectFilter:
    """A compiled consumer/API filter with a per-subject-id verdict cache."""

    __slots__ = ("filters", "pred", "literal", "cache")

    def __init__(self, filters: list[str] | None):
        fs = [f for f in (filters or []) if f]
        self.filters = fs
        self.pred = compile_filters(fs)
        self.literal = fs[0] if len(fs) == 1 and is_literal(fs[0]) else None
        self.cache: dict[int, bool] = {}

    def matches(self, sid: int, name: str) -> bool:
        if self.pred is None:
            return True
        m = self.cache.get(sid)
        if m is None:
            if len(self.cache) > _CACHE_TRIM:
                self.cache.clear()
            m = self.cache[sid] = self.pred(name)
        return m


def _as_filter(subject: str | None) -> SubjectFilter | None:
    if subject is None or subject == "" or subject == ">":
        return None
    return SubjectFilter([subject])
