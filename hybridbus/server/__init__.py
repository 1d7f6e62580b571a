"""The server: listeners, connections, and the wiring between router, store and front ends."""
