"""Stream requests: ``STREAM.*``, ``STREAM.MSG.*`` and ``DIRECT.GET``."""

from __future__ import annotations
