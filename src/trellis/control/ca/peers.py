"""Who is behind each connection the TLS front forwards: the client's address and certificate.

grpcio's Python server cannot ask for an *optional* client certificate (its
`require_client_auth=False` means "do not request one"), so the secure port's
TLS is terminated by `front.py`, which forwards each connection to an internal
loopback gRPC port. The front records here, before forwarding a byte, the
local port of its upstream connection with the TLS peer's verified
certificate; gRPC handlers look their caller up by `context.peer()`.

A connection made to the internal port by anyone else has no entry: it is
treated as having no certificate (and no address beyond loopback).
Pure apart from the dict; knows nothing of TLS or gRPC.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509

from trellis.control.ca import pki
from trellis.wire import SpiffeId


@dataclass(frozen=True, slots=True)
class PeerCertificate:
    """The verified leaf certificate a TLS client presented."""

    serial: str  # hex
    uris: tuple[str, ...]
    not_after: dt.datetime

    @classmethod
    def from_der(cls, der: bytes) -> PeerCertificate:
        cert = x509.load_der_x509_certificate(der)
        return cls(pki.serial_hex(cert), tuple(pki.uri_sans(cert)), pki.not_after(cert))

    def spiffe_id(self) -> SpiffeId:
        """The one workload SPIFFE ID of a mesh SVID; ValueError for any other certificate."""
        if len(self.uris) != 1:
            raise ValueError(f"a mesh SVID has exactly one URI SAN, not {len(self.uris)}")
        return SpiffeId.parse(self.uris[0])


@dataclass(frozen=True, slots=True)
class Peer:
    remote: str  # the client's address, as gRPC spells peers: ipv4:10.0.0.5:41234
    certificate: PeerCertificate | None


def grpc_peer_name(host: str, port: int) -> str:
    return f"ipv6:[{host}]:{port}" if ":" in host else f"ipv4:{host}:{port}"


class PeerTable:
    """local port of a forwarded connection -> Peer."""

    def __init__(self) -> None:
        self._by_port: dict[int, Peer] = {}

    def add(self, local_port: int, peer: Peer) -> None:
        self._by_port[local_port] = peer

    def remove(self, local_port: int) -> None:
        self._by_port.pop(local_port, None)

    def lookup(self, grpc_peer: str) -> Peer | None:
        """The peer behind `context.peer()` of a call on the internal port, if it came through
        the front."""
        if not grpc_peer.startswith("ipv4:127.0.0.1:"):
            return None
        port_text = grpc_peer.rpartition(":")[2]
        return self._by_port.get(int(port_text)) if port_text.isdigit() else None

    def items(self) -> dict[int, Peer]:
        """A copy: local port of the forwarded connection -> the peer behind it."""
        return dict(self._by_port)

    def __len__(self) -> int:
        return len(self._by_port)
