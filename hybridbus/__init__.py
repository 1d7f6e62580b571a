__version__ = "0.1.0"

# The NATS server version advertised in INFO and /varz: nats-py gates features on
# `minor >= 9` and nats.go on >= 2.9.0, so it must be a 2.x (x >= 9); hybridbus's own
# version goes in INFO's `go` field.
NATS_COMPAT_VERSION = "2.11.0"
