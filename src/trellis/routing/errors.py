"""The one error `RouteTable.compile` raises: where in the RouteConfiguration, and why.

Owns the error type and the field-path spelling (`virtual_hosts[0].routes[2].match.safe_regex`).
Must not know any routing semantics.
"""

from __future__ import annotations


class RouteConfigError(Exception):
    """A RouteConfiguration the proxy cannot apply; `str()` is `"{path}: {reason}"`.

    The xDS client NACKs with this message, so it names the field (relative to
    the RouteConfiguration) and says what is wrong with it.
    """

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason

    def __reduce__(self) -> tuple[type[RouteConfigError], tuple[str, str]]:
        return type(self), (self.path, self.reason)


def field(path: str, name: str) -> str:
    """`path.name`, or `name` at the top level."""
    return f"{path}.{name}" if path else name
