"""Subject router: a token trie of subscriptions with a match cache.

Knows neither MQTT nor NATS; see ``hybridbus.router.sublist`` for the theory of
operation and ``hybridbus.subjects`` for the subject rules and the topic mapping.
"""

from hybridbus.router.sublist import DEFAULT_CACHE_MAX, Sublist, SublistResult, Subscription

__all__ = ["DEFAULT_CACHE_MAX", "Sublist", "SublistResult", "Subscription"]
