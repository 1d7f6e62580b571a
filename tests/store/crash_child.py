"""Child process for test_crash.py (run as a script, never collected as a test).

``append DIR``: open DIR with sync_always, continue the id sequence found in stream K,
append without pause and print ``<seq> <id>`` once each append is reported durable.
The parent SIGKILLs it at some moment.

``fsize DIR LIMIT``: cap file sizes with RLIMIT_FSIZE so writes fail for real (EFBIG),
append until a write fails, and report what the caller saw.
"""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))

from hybridbus.store import StoreWriteError, StreamConfig, open_store  # noqa: E402
from hybridbus.store import errors as E  # noqa: E402


def out(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def append_forever(directory: str) -> None:
    store = open_store(directory, sync_always=True)
    try:
        st = store.stream("K")
    except E.StreamNotFound:
        st = store.add_stream(StreamConfig(name="K", subjects=["k.>"]))
    state = st.state()
    next_id = int(st.get(state.last_seq).payload) + 1 if state.messages else 0
    out(f"ready {next_id}")

    def durable(seq: int, err: BaseException | None) -> None:
        if err is None:
            out(f"{seq} {payloads.pop(seq)}")

    payloads: dict[int, int] = {}
    while True:
        for _ in range(20):
            seq = st.append("k.x", b"%08d" % next_id, on_durable=durable)
            payloads[seq] = next_id
            next_id += 1
        await asyncio.sleep(0)


async def fill_until_error(directory: str, limit: int) -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of being killed
    store = open_store(directory, segment_size=1 << 30)
    st = store.add_stream(StreamConfig(name="F", subjects=["f.>"]))
    mem = store.add_stream(StreamConfig(name="M", subjects=["m.>"], storage="memory"))
    _soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    errs: list[BaseException] = []
    acked = 0
    done = asyncio.Event()

    def durable(seq: int, err: BaseException | None) -> None:
        nonlocal acked
        if err is None:
            acked = seq
        else:
            errs.append(err)
            done.set()

    i = 0
    while not done.is_set() and i < 100000:
        st.append("f.x", b"%08d" % i, on_durable=durable)
        i += 1
        if i % 10 == 0:
            await asyncio.sleep(0)
    await asyncio.wait_for(done.wait(), 10)
    err = errs[0]
    out(f"acked {acked}")
    out(
        f"error {type(err).__name__} {getattr(err, 'errno', None)} {getattr(err, 'err_code', None)}"
    )
    try:
        st.append("f.x", b"more")
        out("refused no")
    except StoreWriteError as e:
        out(f"refused {e.err_code}")
    out(f"memory {mem.append('m.x', b'still here')}")
    out(f"write_errors {store.stats()['write_errors']}")
    resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
    await store.close()
    out("closed")


def main() -> None:
    mode = sys.argv[1]
    try:
        import uvloop

        run = uvloop.run
    except ImportError:  # pragma: no cover
        run = asyncio.run
    if mode == "append":
        run(append_forever(sys.argv[2]))
    elif mode == "fsize":
        run(fill_until_error(sys.argv[2], int(sys.argv[3])))


if __name__ == "__main__":
    main()
