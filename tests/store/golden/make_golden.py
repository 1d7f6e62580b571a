"""Build the golden store files (format version 1).

Run ``python tests/store/golden/make_golden.py`` from the repository root to rewrite the
files in this directory. test_golden.py rebuilds them in memory and compares them with the
committed bytes, so an unintended change of the on-disk format fails the tests; an
intended one needs a new format version and regenerated files.

Contents of ``v1-basic.seg`` (stream "G", subjects ["g.>"], base_seq 1):
    MSG 1 g.a   headers "NATS/1.0\\r\\nX-K: v\\r\\n\\r\\n"  payload b"one"
    MSG 2 g.b   payload b"two"   msg_id "m-2"
    MSG 3 g.a   payload b"three"
    DEL [2, 2]
    CSNAP consumer cid 7: delivered 1, pending {1}
    COPS  cid 7: deliver 3, ack 1
    MSG 4 g.c   payload b"four"
Variants: ``v1-truncated.seg`` (cut inside MSG 4), ``v1-bitflip.seg`` (one bit of MSG 3's
payload flipped), ``v1-bitflip-length.seg`` (one bit of MSG 1's length field flipped).
``v1-basic.idx`` is the index of v1-basic.seg.
"""

from __future__ import annotations

import json
import os
import sys
import zlib
from array import array

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.abspath(os.path.join(HERE, "..", "..", "..")))

from hybridbus.store import records  # noqa: E402
from hybridbus.store.consumer import OP_ACK, OP_DELIVER  # noqa: E402
from hybridbus.store.file import segment  # noqa: E402

T0 = 1_700_000_000_000_000_000  # fixed timestamps: the files must be reproducible
MS0 = T0 // 1_000_000
CID = 7
HDR = b"NATS/1.0\r\nX-K: v\r\n\r\n"


def build() -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    recs = [
        records.msg_record(1, T0, "g.a", HDR, b"one"),
        records.msg_record(2, T0 + 1000, "g.b", None, b"two", "m-2"),
        records.msg_record(3, T0 + 2000, "g.a", None, b"three"),
        records.del_record([2, 2]),
        records.csnap_record(
            CID, {"d": 1, "s": 1, "p": [1, 1, MS0 + 30_000], "r": [], "q": [], "i": False}
        ),
        records.cops_record(CID, [OP_DELIVER, 3, MS0 + 5, OP_ACK, 1, 0]),
        records.msg_record(4, T0 + 3000, "g.c", None, b"four"),
    ]
    offsets = []
    seg = bytearray(records.segment_header(1))
    for r in recs:
        offsets.append(len(seg))
        seg += r
    basic = bytes(seg)
    out["v1-basic.seg"] = basic
    out["v1-truncated.seg"] = basic[: offsets[6] + 9]
    flipped = bytearray(basic)
    pos = basic.index(b"three")
    flipped[pos + 2] ^= 0x04
    out["v1-bitflip.seg"] = bytes(flipped)
    flen = bytearray(basic)
    flen[offsets[0] + 8] ^= 0x01  # the low byte of MSG 1's u32 length
    out["v1-bitflip-length.seg"] = bytes(flen)

    sids = {0: "g.a", 1: "g.b", 2: "g.c"}
    msg_offs = [offsets[0], offsets[1], offsets[2], offsets[6]]
    out["v1-basic.idx"] = segment._index_body(
        zlib.crc32(basic),
        len(basic),
        1,  # base
        1,  # first
        array("I", msg_offs),
        array("I", [0, 1, 0, 2]),
        # nats-server's fileStoreMsgSize: subject + payload + 30, + headers + 4
        array("I", [3 + len(HDR) + 3 + 34, 3 + 3 + 30, 3 + 5 + 30, 3 + 4 + 30]),
        array("q", [T0, T0 + 1000, T0 + 2000, T0 + 3000]),
        sids,
        [2, 2],
        [offsets[4], offsets[5]],
        4,
        [2, T0 + 1000, "m-2"],
    )
    out["stream.json"] = (
        json.dumps(
            {
                "version": 1,
                "created": T0,
                "config": {"name": "G", "subjects": ["g.>"], "duplicate_window": 1e9},
            },
            sort_keys=True,
            indent=1,
        ).encode()
        + b"\n"
    )
    out["consumer-c.json"] = (
        json.dumps(
            {
                "version": 1,
                "cid": CID,
                "created": T0,
                "config": {"name": "c", "durable_name": "c", "ack_wait": 30.0},
            },
            sort_keys=True,
            indent=1,
        ).encode()
        + b"\n"
    )
    return out


def main() -> None:
    for name, data in build().items():
        with open(os.path.join(HERE, name), "wb") as f:
            f.write(data)
        print(f"wrote {name} ({len(data)} bytes)")


if __name__ == "__main__":
    main()
