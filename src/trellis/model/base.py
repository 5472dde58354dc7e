"""Shared pieces of every document: the pydantic base, metadata, label rules."""

from __future__ import annotations

import re
from typing import Annotated, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

API_VERSION = "trellis.dev/v1alpha1"

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")


class Spec(BaseModel):
    """Base of every schema object: camelCase in YAML/JSON, unknown fields rejected.

    Types are strict, as the Kubernetes apiserver's are: an integer field takes an
    integer (not `true`, `"5"` or `5.0`), a boolean field `true` or `false` (not `1` or
    `"true"`), a string field a string; a number field (float) also takes an integer,
    never NaN or infinity. YAML and JSON give the same answer: both arrive here as the
    same plain values (durations are strings, GEP-2257: `duration.py`).
    """

    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        frozen=True,
        validate_default=True,
        strict=True,
        allow_inf_nan=False,
    )


def _dns_label(value: str) -> str:
    if len(value) > 63 or not _DNS_LABEL.match(value):
        raise ValueError(
            f"{value!r} is not a DNS label (lower-case letters, digits and '-', "
            "starting and ending with a letter or digit, at most 63 characters)"
        )
    return value


def _labels(value: dict[str, str]) -> dict[str, str]:
    for k, v in value.items():
        if len(k) > 253 or not _LABEL_KEY.match(k):
            raise ValueError(f"invalid label key {k!r}")
        if len(v) > 63 or not _LABEL_VALUE.match(v):
            raise ValueError(f"invalid label value {v!r} for key {k!r}")
    return value


Name = Annotated[str, AfterValidator(_dns_label)]
Labels = Annotated[dict[str, str], AfterValidator(_labels)]


class ObjectMeta(Spec):
    name: Name
    namespace: Name = "default"
    labels: Labels = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    # Set by the store, never by users: ignored on input.
    resource_version: int | None = None
    creation_revision: int | None = None


class Document(Spec):
    """A mesh resource: `apiVersion`, `kind`, `metadata`, `spec`."""

    KIND: ClassVar[str] = ""
    CLUSTER_SCOPED: ClassVar[bool] = False

    api_version: str = API_VERSION
    kind: str
    metadata: ObjectMeta

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str:
        return "" if self.CLUSTER_SCOPED else self.metadata.namespace

    def to_dict(self) -> dict[str, object]:
        """The document as YAML/JSON shows it (camelCase, defaults included)."""
        return self.model_dump(by_alias=True, mode="json", exclude_none=True)


def selector_matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    """Kubernetes equality selector; an empty selector selects nothing (as for Services)."""
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())
