"""Service: a name clients call, its ports, and the label selector of its members."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from trellis.model.base import Document, Labels, Name, Spec
from trellis.model.errors import describe_value

Protocol = Literal["http", "http2", "grpc", "tcp"]


class ServicePort(Spec):
    name: Name | None = None
    port: int = Field(ge=1, le=65535)
    # A workload port's number or name; defaults to `port`.
    target_port: int | str | None = None
    protocol: Protocol = "http"

    @field_validator("target_port", mode="before")
    @classmethod
    def _target(cls, v: Any) -> Any:
        # One message for the union (int | str), and a string of digits is no port name:
        # `"8080"` would never match one (Kubernetes' IntOrString refuses it too).
        number = isinstance(v, int) and not isinstance(v, bool)
        name = isinstance(v, str) and not v.isdigit() and v != ""
        if v is not None and not ((number and 1 <= v <= 65535) or name):
            raise ValueError(
                f"must be a port number 1-65535 or a port name, got {describe_value(v)}"
            )
        return v


class ServiceMTLS(Spec):
    """A per-service override of MeshConfig `mtls.mode` for its members' inbound side."""

    mode: Literal["STRICT", "PERMISSIVE"]


class ServiceSpec(Spec):
    selector: Labels = Field(default_factory=dict)
    ports: list[ServicePort] = Field(min_length=1)
    mtls: ServiceMTLS | None = None

    @model_validator(mode="after")
    def _unique_ports(self) -> ServiceSpec:
        numbers = [p.port for p in self.ports]
        if len(set(numbers)) != len(numbers):
            raise ValueError("ports: port numbers must be unique")
        names = [p.name for p in self.ports if p.name]
        if len(set(names)) != len(names):
            raise ValueError("ports: port names must be unique")
        if len(self.ports) > 1 and len(names) != len(self.ports):
            raise ValueError("ports: every port needs a name when a service has several")
        return self


class Service(Document):
    KIND = "Service"
    kind: Literal["Service"] = "Service"
    spec: ServiceSpec

    def port(self, number: int) -> ServicePort | None:
        return next((p for p in self.spec.ports if p.port == number), None)

    def default_port(self) -> ServicePort | None:
        """The port a name without a port means: 80 when declared, else the only port."""
        if p := self.port(80):
            return p
        return self.spec.ports[0] if len(self.spec.ports) == 1 else None
