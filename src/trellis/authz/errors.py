"""The one error `Engine.compile` raises: where in the RBAC filter config, and why.

Owns the error type only; paths are spelled as trellis.routing spells them
(`rules.policies[shop/deny-admin].principals[0].and_ids.ids[1].header`),
relative to the `envoy.extensions.filters.http.rbac.v3.RBAC` message. Must
not know any authorization semantics.
"""

from __future__ import annotations


class RbacConfigError(Exception):
    """An RBAC filter config the proxy cannot apply; `str()` is `"{path}: {reason}"`.

    The xDS client NACKs with this message, so it names the field and says
    what is wrong with it.
    """

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason

    def __reduce__(self) -> tuple[type[RbacConfigError], tuple[str, str]]:
        return type(self), (self.path, self.reason)
