"""Room for the JetStream API front end (``$JS.API.>`` requests over
``hybridbus.store``). Empty until that work lands; see docs/architecture.md."""
