"""Free ports for the servers tests start: see trellis.ports."""

from trellis.ports import free_port

__all__ = ["free_port"]
