"""Seed sessions and mutators for live-server fuzzing (NATS, MQTT, websocket).

Every generator takes a ``random.Random`` so a failing run can be replayed from
its seed. ``session`` functions produce plausible client byte streams (what a real
client might send, including credentials that may or may not be right); ``mutate``
damages them the way broken clients and attackers do: flipped bits, cut or
duplicated slices, wrong sizes, foreign bytes, and pure noise.
"""

from __future__ import annotations

import json
import os
import random
import struct

from tests.helpers import mqtt_packets as mp

SUBJECTS = [
    "foo",
    "foo.bar",
    "a.b.c",
    "fz.x",
    "fz.>",
    "*",
    ">",
    "a..b",
    "q.*",
    "_INBOX.1",
    "$SYS.x",
]
TOPICS = ["a/b", "fz/x", "+/x", "#", "a/#", "$SYS/x", "/lead", "trail/", "dbl//s", "dot.ted"]
USERS = [("fz", "fz-pw"), ("fz", "wrong"), ("nobody", "x"), ("ctl", "ctl-pw"), (None, None)]


# -- NATS -------------------------------------------------------------------------------


def nats_connect_line(rng: random.Random) -> bytes:
    opts: dict = {}
    for key in ("verbose", "pedantic", "echo", "headers", "no_responders"):
        if rng.random() < 0.5:
            opts[key] = rng.random() < 0.5
    if rng.random() < 0.3:
        opts["protocol"] = rng.choice([0, 1, 2, -1, "x"])
    user, password = rng.choice(USERS)
    if user is not None:
        opts["user"], opts["pass"] = user, password
    if rng.random() < 0.1:
        opts["auth_token"] = rng.choice(["tok", "", 5])
    if rng.random() < 0.05:
        opts["nkey"] = "UABC"
    if rng.random() < 0.1:
        opts["name"] = "é" * rng.randint(0, 50)
    return b"CONNECT " + json.dumps(opts).encode() + b"\r\n"


def _b(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def nats_op(rng: random.Random) -> bytes:
    subj = _b(rng.choice(SUBJECTS))
    payload = rng.randbytes(rng.choice([0, 1, 5, 100, 3000]))
    kind = rng.randrange(9)
    if kind == 0:
        reply = b" " + _b(rng.choice(SUBJECTS)) if rng.random() < 0.4 else b""
        return b"PUB %s%s %d\r\n%s\r\n" % (subj, reply, len(payload), payload)
    if kind == 1:
        hdr = b"NATS/1.0\r\nK: v\r\n\r\n" if rng.random() < 0.8 else b"NATS/1.0 503\r\n\r\n"
        return b"HPUB %s %d %d\r\n%s%s\r\n" % (
            subj,
            len(hdr),
            len(hdr) + len(payload),
            hdr,
            payload,
        )
    if kind == 2:
        queue = b" q" + str(rng.randrange(3)).encode() if rng.random() < 0.3 else b""
        sid = b"%d" % rng.randrange(20) if rng.random() < 0.9 else b"s\xff"
        return b"SUB %s%s %s\r\n" % (subj, queue, sid)
    if kind == 3:
        return b"UNSUB %d %d\r\n" % (rng.randrange(20), rng.randrange(3))
    if kind == 4:
        return rng.choice([b"PING\r\n", b"PONG\r\n", b"ping\n", b"+OK\r\n"])
    if kind == 5:
        return b"INFO {}\r\n"
    if kind == 6:
        return b"-ERR 'x'\r\n"
    if kind == 7:
        return nats_connect_line(rng)
    return b"PUB %s 5\r\n%s" % (subj, payload[:5])  # size/payload mismatch likely


def nats_session(rng: random.Random) -> tuple[bytes, bytes]:
    """(CONNECT line or b"", the ops after it)."""
    head = nats_connect_line(rng) if rng.random() < 0.85 else b""
    return head, b"".join(nats_op(rng) for _ in range(rng.randint(1, 12)))


# -- MQTT -------------------------------------------------------------------------------


def _props(rng: random.Random) -> bytes:
    choices = [
        b"\x11" + struct.pack("!I", rng.randrange(0, 100)),  # session expiry
        b"\x21" + struct.pack("!H", rng.randrange(0, 70000) & 0xFFFF),  # receive maximum
        b"\x22" + struct.pack("!H", rng.randrange(0, 20)),  # topic alias maximum
        b"\x26" + mp.s("k") + mp.s("v"),  # user property
        b"\x27" + struct.pack("!I", rng.randrange(0, 5000)),  # maximum packet size
        b"\x15" + mp.s("SCRAM"),  # authentication method (unsupported)
        b"\x23" + struct.pack("!H", rng.randrange(0, 5)),  # topic alias
        b"\x0b\x05",  # subscription identifier
        bytes((rng.randrange(256),)),  # unknown property id
    ]
    return b"".join(rng.sample(choices, rng.randint(0, 3)))


def mqtt_connect(rng: random.Random, level: int) -> bytes:
    user, password = rng.choice(USERS)
    will = None
    if rng.random() < 0.2:
        will = (rng.choice(TOPICS), b"will", rng.randrange(3), rng.random() < 0.5)
    return mp.connect(
        rng.choice(["", "fz1", "fz2", "c" * 30]),
        clean=rng.random() < 0.7,
        keepalive=rng.choice([0, 1, 60, 65535]),
        will=will,
        username=user,
        password=password.encode() if password is not None else None,
        level=level,
        properties=_props(rng) if level == 5 else b"",
    )


def mqtt_packet(rng: random.Random, level: int) -> bytes:
    kind = rng.randrange(10)
    mid = rng.randrange(0, 70000) & 0xFFFF
    props = _props(rng) if level == 5 and rng.random() < 0.5 else b""
    if kind <= 2:
        return mp.publish(
            rng.choice(TOPICS),
            rng.randbytes(rng.choice([0, 3, 200])),
            qos=rng.randrange(3),
            retain=rng.random() < 0.2,
            dup=rng.random() < 0.1,
            mid=mid,
            level=level,
            properties=props,
        )
    if kind == 3:
        filters = [(rng.choice(TOPICS + ["$share/g/a/b", "$share//x"]), rng.randrange(64))]
        return mp.subscribe(mid, *filters, level=level, properties=props)
    if kind == 4:
        return mp.unsubscribe(mid, rng.choice(TOPICS), level=level)
    if kind == 5:
        return rng.choice([mp.puback(mid), mp.pubrec(mid), mp.pubrel(mid), mp.pubcomp(mid)])
    if kind == 6:
        return b"\xc0\x00"  # PINGREQ
    if kind == 7:
        return rng.choice([b"\xe0\x00", b"\xe0\x02\x04\x00", b"\xf0\x00", b"\x20\x02\x00\x00"])
    if kind == 8:
        return mqtt_connect(rng, level)  # a second CONNECT
    return (
        bytes((rng.randrange(256),))
        + mp.varint(rng.randrange(0, 300))
        + rng.randbytes(rng.randrange(8))
    )


def mqtt_session(rng: random.Random) -> tuple[bytes, bytes]:
    """(CONNECT packet or b"", the packets after it)."""
    level = rng.choice([3, 4, 4, 5, 5])
    head = mqtt_connect(rng, level) if rng.random() < 0.9 else b""
    return head, b"".join(mqtt_packet(rng, level) for _ in range(rng.randint(0, 10)))


# -- websocket --------------------------------------------------------------------------


def ws_frame(payload: bytes, opcode: int = 0x2, fin: bool = True, rsv: int = 0, mask=True) -> bytes:
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    n = len(payload)
    if n < 126:
        head = bytes((b0, (0x80 if mask else 0) | n))
    elif n < 65536:
        head = bytes((b0, (0x80 if mask else 0) | 126)) + struct.pack("!H", n)
    else:
        head = bytes((b0, (0x80 if mask else 0) | 127)) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def ws_upgrade(rng: random.Random, path: str) -> bytes:
    lines = [
        f"GET {path} HTTP/1.1",
        "Host: 127.0.0.1",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
    ]
    if path == "/mqtt" and rng.random() < 0.9:
        lines.append("Sec-WebSocket-Protocol: mqtt")
    if rng.random() < 0.2:
        lines.append("Origin: http://" + rng.choice(["127.0.0.1", "evil.example"]))
    if rng.random() < 0.2:
        lines.append("Sec-WebSocket-Extensions: permessage-deflate")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def ws_session(rng: random.Random, mutate_inner: bool = False) -> tuple[bytes, bytes]:
    """(upgrade request, frames carrying a NATS or MQTT session)."""
    mqtt = rng.random() < 0.5
    head, body = mqtt_session(rng) if mqtt else nats_session(rng)
    inner = head + (mutate(rng, body) if mutate_inner else body)
    upgrade = ws_upgrade(rng, "/mqtt" if mqtt else rng.choice(["/", "/nats", "/x?y=1"]))
    out = []
    pos = 0
    while pos < len(inner):
        n = rng.randint(1, 200)
        chunk = inner[pos : pos + n]
        pos += n
        r = rng.random()
        if r < 0.05:
            out.append(ws_frame(b"ping", opcode=0x9))
        elif r < 0.08:
            out.append(ws_frame(chunk, opcode=0x1))  # text
        elif r < 0.1:
            out.append(ws_frame(chunk, fin=False))
            out.append(ws_frame(b"", opcode=0x0))
        elif r < 0.12:
            out.append(ws_frame(chunk, rsv=rng.randrange(8), opcode=rng.randrange(16)))
        elif r < 0.13:
            out.append(ws_frame(chunk, mask=False))
        else:
            out.append(ws_frame(chunk))
    if rng.random() < 0.2:
        out.append(ws_frame(struct.pack("!H", rng.choice([1000, 1005, 999, 4000])), opcode=0x8))
    return upgrade, b"".join(out)


# -- mutation ---------------------------------------------------------------------------


def mutate(rng: random.Random, data: bytes, rounds: int | None = None) -> bytes:
    buf = bytearray(data)
    for _ in range(rounds if rounds is not None else rng.randint(1, 6)):
        if not buf:
            buf += rng.randbytes(rng.randint(1, 16))
            continue
        i = rng.randrange(len(buf))
        op = rng.randrange(9)
        if op == 0:
            buf[i] ^= 1 << rng.randrange(8)
        elif op == 1:
            buf[i] = rng.randrange(256)
        elif op == 2:
            del buf[i : i + rng.randint(1, 16)]
        elif op == 3:
            buf[i:i] = rng.randbytes(rng.randint(1, 16))
        elif op == 4:
            j = rng.randrange(len(buf))
            buf[i:i] = buf[j : j + rng.randint(1, 64)]
        elif op == 5:
            del buf[i:]  # truncate: a half packet
        elif op == 6:
            buf[i:i] = rng.choice([b"\r\n", b"\n", b" ", b"\x00", b"\xff", b"9999999999", b"-1"])
        elif op == 7:
            # rewrite a decimal number (NATS sizes and sids)
            digits = str(rng.choice([0, 1, 2**31, 2**63, 99999999])).encode()
            buf[i : i + 1] = digits
        else:
            buf[i : i + 1] = bytes((0x80 | rng.randrange(128),)) * rng.randint(1, 5)  # varint run
    return bytes(buf)


def noise(rng: random.Random) -> bytes:
    return rng.randbytes(rng.choice([1, 7, 64, 1000, 20000]))


def splits(rng: random.Random, data: bytes) -> list[bytes]:
    """Cut a stream the way TCP might deliver it."""
    if len(data) < 2 or rng.random() < 0.3:
        return [data]
    cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(1, 8))))
    out, last = [], 0
    for cut in cuts + [len(data)]:
        out.append(data[last:cut])
        last = cut
    return out
