"""The NATS client protocol front end: the connection adapter that feeds the sans-IO
parser (``hybridbus.codec.nats``), handles each op and writes MSG/HMSG to receivers.
The leaf-node connection (scale-out) will sit beside it. It never imports
``hybridbus.mqtt`` or ``hybridbus.server``: it reaches the server through
``hybridbus.core.hub.Hub``."""
