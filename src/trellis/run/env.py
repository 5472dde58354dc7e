"""The environment a meshed app runs in (DESIGN §1). Pure.

- `HTTP_PROXY`/`http_proxy` point at the sidecar's outbound listener, so any
  HTTP client library sends `GET http://ratings:9080/x` to it; `NO_PROXY`/
  `no_proxy` keep local addresses direct.
- `grpc_proxy` is set empty: grpcio applies http_proxy to every target, `xds:`
  included, and reads grpc_proxy first, taking empty as "no proxy".
- `GRPC_XDS_BOOTSTRAP` names the proxyless bootstrap, and
  `GRPC_EXPERIMENTAL_XDS_DATA_ERROR_HANDLING=true` lets grpcio fail fast on
  names the control plane answers NOT_FOUND.
- `TRELLIS_SERVICE`, `TRELLIS_NAMESPACE`, `TRELLIS_WORKLOAD` (and `PORT` when
  the app has one) tell the app who it is.
"""

from __future__ import annotations

from collections.abc import Mapping

LOCAL = ("localhost", "127.0.0.1", "::1")


def _no_proxy(existing: str) -> str:
    names = [n.strip() for n in existing.split(",") if n.strip()]
    for local in LOCAL:
        if local not in names:
            names.append(local)
    return ",".join(names)


def app_environment(
    base: Mapping[str, str],
    *,
    outbound: str | None,
    bootstrap: str,
    service: str,
    namespace: str,
    workload: str,
    port: int | None,
) -> dict[str, str]:
    """`base` plus what a meshed app needs; `outbound` is None for proxyless apps."""
    env = dict(base)
    for name in (
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ):
        env.pop(name, None)
    if outbound is not None:
        env["HTTP_PROXY"] = env["http_proxy"] = f"http://{outbound}"
    no_proxy = _no_proxy(base.get("NO_PROXY") or base.get("no_proxy") or "")
    env["NO_PROXY"] = env["no_proxy"] = no_proxy
    env["grpc_proxy"] = ""
    env["GRPC_XDS_BOOTSTRAP"] = bootstrap
    env.pop("GRPC_XDS_BOOTSTRAP_CONFIG", None)
    env["GRPC_EXPERIMENTAL_XDS_DATA_ERROR_HANDLING"] = "true"
    env["TRELLIS_SERVICE"] = service
    env["TRELLIS_NAMESPACE"] = namespace
    env["TRELLIS_WORKLOAD"] = workload
    if port is not None:
        env["PORT"] = str(port)
    return env
