"""Retained messages: the last retained PUBLISH per topic [MQTT-3.3.1-5].

The index is a dict by topic. A subscribe with a literal filter is one lookup; a
wildcard filter scans the index with a compiled matcher, which replays 100,000
retained topics to a `#` subscriber in well under a second. The store keeps the
durable copy (see ``persistence.py``); this index is rebuilt from it at start. With
``mqtt.retained_kv`` the topics of the KV bucket are read from the bucket instead
(``bucket``, see ``jetstream/retained_kv.py``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hybridbus.mqtt.message import MqttMessage


def filter_matcher(topic_filter: str):
    """A predicate for topics matching an MQTT filter, with the `$` rule [MQTT-4.7.2-1]."""
    levels = topic_filter.split("/")
    parts = []
    for i, level in enumerate(levels):
        if level == "#":
            # `a/#` matches `a` itself as well as everything below it [MQTT-4.7.1-2].
            if parts:
                parts[-1] = parts[-1][:-1]  # drop the '/' before '#'
                parts.append("(?:/.*)?")
            else:
                parts.append(".*")
            break
        piece = "[^/]*" if level == "+" else re.escape(level)
        parts.append(piece + ("/" if i < len(levels) - 1 else ""))
    regex = re.compile("".join(parts), re.DOTALL)
    skips_dollar = levels[0] in ("#", "+")
    match = regex.fullmatch

    def matches(topic: str) -> bool:
        if skips_dollar and topic[:1] == "$":
            return False
        return match(topic) is not None

    return matches


class RetainedIndex:
    __slots__ = ("by_topic", "seqs", "bucket")

    def __init__(self) -> None:
        self.by_topic: dict[str, MqttMessage] = {}
        self.seqs: dict[str, int] = {}  # store sequence of each topic's record
        # With mqtt.retained_kv, the KV bucket that holds the retained messages of its
        # topics (jetstream/retained_kv.py RetainedKV: subject_for, match, count, put,
        # delete); this index then holds only the other topics.
        self.bucket: Any = None

    def __len__(self) -> int:
        if self.bucket is not None:
            return len(self.by_topic) + self.bucket.count()
        return len(self.by_topic)

    def set(self, msg: MqttMessage, seq: int = 0) -> None:
        self.by_topic[msg.topic] = msg
        if seq:
            self.seqs[msg.topic] = seq

    def clear(self, topic: str) -> int:
        """Forget `topic`'s retained message; returns its store sequence (0 if none)."""
        self.by_topic.pop(topic, None)
        return self.seqs.pop(topic, 0)

    def match(self, topic_filter: str) -> Iterator[MqttMessage]:
        if self.bucket is not None:
            yield from self.bucket.match(topic_filter)
        if "+" not in topic_filter and "#" not in topic_filter:
            msg = self.by_topic.get(topic_filter)
            if msg is not None:
                yield msg
            return
        matches = filter_matcher(topic_filter)
        for topic, msg in list(self.by_topic.items()):
            if matches(topic):
                yield msg
