"""Socket settings shared by the load generators."""

from __future__ import annotations

import socket
import struct


def tune(sock: socket.socket) -> None:
    # Generators batch their own writes; Nagle would only add delay to PINGs and acks.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def recv_timeout(sock: socket.socket, seconds: float) -> None:
    """Blocking socket with a kernel receive timeout (SO_RCVTIMEO).

    Python's own socket timeout polls before every recv: one more syscall and wake-up per
    read, which shows in round-trip latency and in receiver CPU. With SO_RCVTIMEO a recv
    that times out raises BlockingIOError instead.
    """
    sock.settimeout(None)
    sec = int(seconds)
    usec = int((seconds - sec) * 1e6)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", sec, usec))


def set_lowat(sock: socket.socket, lowat: int) -> None:
    """SO_RCVLOWAT: a read (or epoll) waits until ``lowat`` bytes are queued.

    A broker that writes one packet per syscall (Mosquitto does) would otherwise wake the
    receiver for every ~80-byte packet, and the receiver's per-wake-up cost, not the
    broker, would set the rate. Only for QoS 0 / NATS streams: with QoS 1 the broker
    waits for PUBACKs, so a receiver waiting for more bytes would stall it. Receivers
    bound each wait with a timeout and then read whatever is there.
    """
    if lowat > 1:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, lowat)
