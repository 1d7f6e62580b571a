"""Sans-IO protocol codecs: bytes in, events out; events in, bytes out.

Nothing here touches a socket, a clock or the event loop, and nothing imports from the
rest of hybridbus (stdlib only), so each codec can be tested and fuzzed on its own.
`hybridbus.codec.mqtt` speaks MQTT 3.1, 3.1.1 and 5.0.
"""
