"""Store errors, each carrying the JetStream error triple.

Every failure the store reports to a caller is a :class:`StoreError` with ``code`` (the
HTTP-like class nats-py maps to an exception type), ``err_code`` (the JetStream error
number clients branch on) and ``description`` (the server's text). The later JetStream
API layer turns one into ``{"error": {"code", "err_code", "description"}}`` with no
further lookup; see docs jetstream-subset.md section 1 for the numbers.
"""

from __future__ import annotations


class StoreError(Exception):
    """Base class. ``code``/``err_code``/``description`` follow nats-server errors.json."""

    code = 500
    err_code = 10051  # JSStreamGeneralErrorF
    description = "stream error"

    def __init__(self, description: str | None = None):
        if description is not None:
            self.description = description
        super().__init__(self.description)

    def to_error(self) -> dict:
        """The JetStream API error object (only the keys nats-py accepts)."""
        return {"code": self.code, "err_code": self.err_code, "description": self.description}


class StoreClosed(StoreError):
    code, err_code, description = 503, 10008, "JetStream system temporarily unavailable"


class InvalidConfig(StoreError):
    code, err_code, description = 500, 10052, "invalid stream configuration"


class StreamNotFound(StoreError):
    code, err_code, description = 404, 10059, "stream not found"


class StreamNameInUse(StoreError):
    code, err_code, description = (
        400,
        10058,
        ("stream name already in use with a different configuration"),
    )


class SubjectsOverlap(StoreError):
    code, err_code, description = 400, 10065, "subjects overlap with an existing stream"


class StreamSealed(StoreError):
    code, err_code, description = 400, 10109, "invalid operation on sealed stream"


class ConsumerNotFound(StoreError):
    code, err_code, description = 404, 10014, "consumer not found"


class ConsumerCreateError(StoreError):
    """Illegal consumer config or update (10012, a 500 like nats-server)."""

    code, err_code, description = 500, 10012, "consumer create failed"


class ConsumerInvalidPolicy(StoreError):
    code, err_code, description = 400, 10094, "invalid consumer policy"


class MaxConsumers(StoreError):
    code, err_code, description = 400, 10026, "maximum consumers limit reached"


class WorkQueueConsumerError(StoreError):
    """One of 10098/10099/10100/10101; the subclass picks the number."""

    code = 400


class WQRequiresExplicitAck(WorkQueueConsumerError):
    err_code, description = 10098, "workqueue stream requires explicit ack"


class WQMultipleUnfiltered(WorkQueueConsumerError):
    err_code, description = 10099, "multiple non-filtered consumers not allowed on workqueue stream"


class WQConsumerNotUnique(WorkQueueConsumerError):
    err_code, description = 10100, "filtered consumer not unique on workqueue stream"


class WrongLastSequence(StoreError):
    """``Nats-Expected-Last-(Subject-)Sequence`` mismatch; ``last`` is the actual value."""

    code, err_code = 400, 10071

    def __init__(self, last: int):
        self.last = last
        super().__init__(f"wrong last sequence: {last}")


class WrongLastMsgId(StoreError):
    code, err_code = 400, 10070

    def __init__(self, last_id: str):
        self.last_id = last_id
        super().__init__(f"wrong last msg ID: {last_id}")


class RollupError(StoreError):
    code, err_code, description = 500, 10111, "rollup not permitted"


class MsgSizeExceeded(StoreError):
    code, err_code, description = 400, 10054, "message size exceeds maximum allowed"


class LimitExceeded(StoreError):
    """A discard-new limit refused the message (JSStreamStoreFailedF, a 503)."""

    code, err_code, description = 503, 10077, "maximum messages exceeded"


class StoreFull(StoreError):
    """The store-wide max_file_store / max_memory_store would be exceeded."""

    code, err_code, description = 500, 10047, "insufficient storage resources available"


class MemoryFull(StoreFull):
    err_code, description = 10028, "insufficient memory resources available"


class StoreWriteError(StoreError):
    """Writing or syncing the stream's files failed (disk full, read-only, I/O error).

    ``errno`` is the OS error number when there was one. The stream stays usable for reads;
    appends fail fast for a short back-off and are then retried.
    """

    code, err_code = 503, 10077

    def __init__(self, description: str, errno: int | None = None):
        self.errno = errno
        super().__init__(description)


class MsgNotFound(StoreError):
    code, err_code, description = 404, 10037, "no message found"


class SeqNotFound(StoreError):
    code, err_code = 400, 10043

    def __init__(self, seq: int):
        self.seq = seq
        super().__init__(f"sequence {seq} not found")


class DeleteNotPermitted(StoreError):
    code, err_code, description = 500, 10057, "message delete not permitted"


class PurgeNotPermitted(StoreError):
    code, err_code, description = 500, 10110, "stream purge not permitted"
