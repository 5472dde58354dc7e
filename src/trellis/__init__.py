"""Trellis: a service mesh for hosts, VMs and processes."""

__version__ = "0.1.0"
