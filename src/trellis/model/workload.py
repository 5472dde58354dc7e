"""Workload: one running instance (like a Pod): labels, identity, address, ports."""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import Field, field_validator, model_validator

from trellis.model.base import Document, Name, Spec
from trellis.model.service import Protocol


class WorkloadPort(Spec):
    name: Name | None = None
    port: int = Field(ge=1, le=65535)
    protocol: Protocol = "http"


class Inbound(Spec):
    """The sidecar's inbound listener port on `address` through which peers reach the app."""

    port: int = Field(ge=1, le=65535)


class WorkloadMetrics(Spec):
    """Where a Prometheus scrapes its sidecar: `address:port` (`/metrics`, scrape token
    required). The control plane lists it for Prometheus's HTTP service discovery."""

    port: int = Field(ge=1, le=65535)


class Locality(Spec):
    region: str = ""
    zone: str = ""
    sub_zone: str = ""


class WorkloadSpec(Spec):
    service_account: Name | None = None  # defaults to the `app` label
    address: str
    ports: list[WorkloadPort] = Field(default_factory=list)
    inbound: Inbound | None = None
    proxyless: bool = False
    locality: Locality = Field(default_factory=Locality)
    weight: int = Field(default=1, ge=1, le=128)
    # Its sidecar (or proxyless server) speaks mesh mTLS with an SVID of its service
    # account: callers with an identity use mTLS to it. Set by `trellis run`.
    mtls: bool = False
    # Its sidecar's metrics listener, for Prometheus (set by `trellis run`); None: none.
    metrics: WorkloadMetrics | None = None

    @field_validator("address")
    @classmethod
    def _address(cls, v: str) -> str:
        try:
            ipaddress.ip_address(v)
        except ValueError:
            raise ValueError(f"{v!r} is not an IP address") from None
        return v

    @model_validator(mode="after")
    def _reach(self) -> WorkloadSpec:
        if (self.inbound is None) == (not self.proxyless):
            raise ValueError("set exactly one of inbound (a sidecar's port) or proxyless: true")
        return self


class Workload(Document):
    KIND = "Workload"
    kind: Literal["Workload"] = "Workload"
    spec: WorkloadSpec

    @property
    def service_account(self) -> str:
        return self.spec.service_account or self.metadata.labels.get("app") or "default"

    def port_for(self, target: int | str) -> WorkloadPort | None:
        """The workload port a Service's targetPort names (by number or name)."""
        for p in self.spec.ports:
            if (isinstance(target, int) and p.port == target) or p.name == target:
                return p
        if isinstance(target, int) and not self.spec.ports:
            return WorkloadPort(port=target)
        return None
