"""Security: who may connect (users, passwords, tokens), what they may do
(publish/subscribe permissions), and TLS contexts for every listener.

``Security`` is built from Options once (and again on reload) and the server
delegates its hooks to it; the protocol front ends never read the auth config.
"""

from hybridbus.security.core import Security
from hybridbus.security.tls import server_context

__all__ = ["Security", "server_context"]
