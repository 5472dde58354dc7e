"""Trellis: a service mesh for hosts, VMs and processes."""

from trellis import compiled as _compiled

__version__ = "0.1.0"

# An edited source must never run as its stale compiled copy (trellis/compiled.py).
_compiled.verify()
