"""What every protocol shares: the client base (outbound buffer, slow-consumer rule,
close reasons) and the ``Hub``, the named interface through which a protocol reaches
the server. It imports no protocol package and not ``hybridbus.server``."""
