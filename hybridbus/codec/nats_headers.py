"""NATS header blocks: ``NATS/1.0[ <status>[ <description>]]\r\n(Name: value\r\n)*\r\n``.

Read from what clients sent (``parse_headers``) and written for what the server sends
(``encode_headers``). Part of the NATS codec (``codec/nats.py`` re-exports both); strings
use UTF-8 with ``surrogateescape``, as there.
"""

from __future__ import annotations


def _dec(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


def _enc(s: str) -> bytes:
    return s.encode("utf-8", "surrogateescape")


def parse_headers(block: bytes) -> tuple[int | None, str, list[tuple[str, str]]]:
    """Parse ``NATS/1.0[ <status>[ <description>]]\\r\\n(Name: value\\r\\n)*\\r\\n``.

    Returns ``(status, description, [(name, value), ...])`` in wire order, duplicates
    kept. Like the clients, the status is the 3 digits after the version token and the
    description the rest of that line. The version token itself is not checked
    (nats-server passes ``HTTP/1.0`` through too). Lenient by design, since it reads
    what clients sent: names and values are stripped, lines without ``:`` are skipped,
    bare ``\\n`` line ends are accepted, and it never raises on bytes input.
    """
    lines = block.split(b"\n")
    first = lines[0].rstrip(b"\r")
    status = None
    description = ""
    sp = first.find(b" ")
    if sp >= 0:
        rest = first[sp + 1 :].lstrip()
        code = rest[:3]
        if len(code) == 3 and code.isdigit() and (len(rest) == 3 or rest[3] in b" \t"):
            status = int(code)
            description = _dec(rest[3:].strip())
        else:
            description = _dec(rest.strip())
    pairs = []
    for line in lines[1:]:
        i = line.find(b":")
        if i <= 0:
            continue  # the closing blank line, or junk
        pairs.append((_dec(line[:i].strip()), _dec(line[i + 1 :].strip())))
    return status, description, pairs


def encode_headers(
    pairs, status: int | None = None, description: str = "", sep: str = ": "
) -> bytes:
    """Build a header block. ``sep`` is what goes between name and value: ``": "`` as
    the NATS clients write it; MQTT-originated headers use ``":"`` (``Nmqtt-Pub:1``).
    Raises ValueError on CR/LF anywhere, or ``:``/blank in a name (header injection)."""
    out = [b"NATS/1.0"]
    if status is not None:
        if not 100 <= status <= 999:
            raise ValueError(f"status must be 3 digits: {status!r}")
        out.append(b" %d" % status)
        if description:
            d = _enc(description)
            if b"\r" in d or b"\n" in d:
                raise ValueError("CR/LF in header description")
            out.append(b" " + d)
    elif description:
        raise ValueError("description needs a status")
    out.append(b"\r\n")
    s = _enc(sep)
    for name, value in pairs:
        n = _enc(name)
        v = _enc(value)
        if not n or n != n.translate(None, b"\r\n: \t") or b"\r" in v or b"\n" in v:
            raise ValueError(f"invalid header field: {name!r}")
        out.append(n + s + v + b"\r\n")
    out.append(b"\r\n")
    return b"".join(out)
