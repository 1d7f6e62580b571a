"""The crash-safe stream store (JetStream's model, no MQTT in it).

``open_store(dir)`` returns a file-backed store (``file/``), ``open_store(None)`` a
memory-only one (``memstore.py``); both implement the protocols in ``api.py`` and share
the stream and consumer logic (``stream.py``, ``consumer.py``). The format on disk is
defined in ``records.py``.

Durability, with nats-server's option names (``jetstream { store_dir, max_memory_store,
max_file_store, sync_interval }``): ``sync_interval`` (seconds, default 120 = nats-server's
2 minutes) bounds how long written data may sit unsynced in the OS page cache;
``sync_always`` (``sync_interval: always``) fsyncs every write batch before its
``on_durable`` callbacks run. Either way a process crash (kill -9) loses nothing that was
reported durable; with the interval policy an OS crash or power loss can lose up to
``sync_interval`` of it.
"""

from __future__ import annotations

from .api import (
    DEFAULT_SYNC_INTERVAL,
    Consumer,
    ConsumerConfig,
    DeliveryInfo,
    Store,
    StoredMsg,
    Stream,
    StreamConfig,
    StreamState,
    decode_headers,
    encode_headers,
)
from .errors import StoreError, StoreWriteError

__all__ = [
    "DEFAULT_SYNC_INTERVAL",
    "Consumer",
    "ConsumerConfig",
    "DeliveryInfo",
    "Store",
    "StoreError",
    "StoreWriteError",
    "StoredMsg",
    "Stream",
    "StreamConfig",
    "StreamState",
    "decode_headers",
    "encode_headers",
    "open_store",
]


def open_store(
    store_dir: str | None,
    *,
    sync_interval: float = DEFAULT_SYNC_INTERVAL,
    sync_always: bool = False,
    max_memory: int = -1,
    max_file: int = -1,
    segment_size: int | None = None,
) -> Store:
    """Open (and recover) a store. ``store_dir=None`` keeps everything in memory.

    Recovery runs synchronously here; its report is ``store.recovery``. ``max_memory`` /
    ``max_file`` (bytes, -1 = unlimited) are ``max_memory_store`` / ``max_file_store``.
    ``sync_interval <= 0`` means ``sync_always``. ``segment_size`` (bytes) is for tests and
    tuning. Safe to call inside a running event loop.
    """
    if sync_interval is None or sync_interval <= 0:
        sync_always = True
        sync_interval = DEFAULT_SYNC_INTERVAL
    kw = dict(
        sync_interval=float(sync_interval),
        sync_always=bool(sync_always),
        max_memory=int(max_memory),
        max_file=int(max_file),
    )
    if store_dir is None:
        from .memstore import MemStore

        return MemStore(**kw)  # type: ignore[return-value]
    from .file.store import DEFAULT_SEGMENT_SIZE, FileStore

    return FileStore(store_dir, segment_size=segment_size or DEFAULT_SEGMENT_SIZE, **kw)  # type: ignore[return-value]
