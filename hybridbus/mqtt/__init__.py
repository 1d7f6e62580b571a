"""The MQTT side of hybridbus: sessions, retained messages, wills, and the packet handlers.

Nothing here touches a socket: ``hybridbus.mqtt.connection`` feeds decoded packets in
and writes the bytes the handlers queue.
"""
