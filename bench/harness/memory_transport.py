"""An asyncio transport that keeps what is written in memory: the in-process
benchmarks (bench_nats_server.py, bench_mqtt_server.py) hand it to real server
connections instead of a socket."""

from __future__ import annotations


class MemoryTransport:
    def __init__(self, port: int, keep: bool = True) -> None:
        self.port = port
        self.keep = keep  # keep the bytes (to read them back), or only count them
        self.data = bytearray()
        self.written = 0

    def get_extra_info(self, name, default=None):
        return ("127.0.0.1", self.port) if name == "peername" else default

    def set_write_buffer_limits(self, high=None, low=None):
        pass

    def get_write_buffer_size(self):
        return 0

    def write(self, data):
        self.written += len(data)
        if self.keep:
            self.data += data

    def pause_reading(self):
        pass

    def resume_reading(self):
        pass

    def close(self):
        pass

    abort = close
