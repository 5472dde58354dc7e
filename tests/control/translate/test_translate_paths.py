"""MeshConfig `pathNormalization` and port protocols in the listeners the control plane makes,
and what the sidecar reads back from them:

- every sidecar HCM (outbound and inbound) states `normalize_path`, `merge_slashes` and
  `path_with_escaped_slashes_action` for the mesh's level; the `trellis/outbound`
  listener (hosts outside the mesh) states no normalization; proxyless listeners carry
  none of the fields (grpcio does not normalize);
- the proxy's decoder turns them into the options the normalizer applies, the mesh
  default into exactly `DEFAULT_OPTIONS` (what simulations assume);
- inbound routes to a port declared `tcp` (by the Workload or by a Service port that
  targets it) accept CONNECT, other ports do not; the decoder reads them as tunnel ports.
"""

from __future__ import annotations

from typing import Any

import pytest
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf import any_pb2
from tests.control.translate.translate_support import hcm_of, load_push, node, one

from trellis.control.translate import LISTENER_TYPE
from trellis.model.errors import InvalidDocuments
from trellis.proxy.config.resources import ConfigError, decode_listener
from trellis.routing.paths import (
    DEFAULT_OPTIONS,
    KEEP_UNCHANGED,
    REJECT_REQUEST,
    UNCHANGED,
    UNESCAPE_AND_FORWARD,
    PathOptions,
)

HCM = hcm_pb2.HttpConnectionManager
MESH = """
apiVersion: trellis.dev/v1alpha1
kind: Service
metadata: {name: shop, namespace: shop}
spec:
  selector: {app: shop}
  ports: [{name: http, port: 80, targetPort: 8080}, {name: db, port: 5432, protocol: tcp}]
---
apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: {name: shop-a, namespace: shop, labels: {app: shop}}
spec:
  address: 10.0.0.7
  inbound: {port: 15006}
  ports: [{port: 8080}, {port: 5432}, {name: raw, port: 9000, protocol: tcp}, {port: 9090}]
"""
INBOUND = "trellis/inbound?address=10.0.0.7:15006"
OUTBOUND = "shop.shop:80"


def with_paths(spec: str) -> str:
    return (
        MESH + "---\napiVersion: trellis.dev/v1alpha1\nkind: MeshConfig\n"
        f"metadata: {{name: mesh}}\nspec: {{pathNormalization: {spec}}}\n"
    )


def inbound_hcm(listener: Any) -> Any:
    hcm = HCM()
    assert listener.filter_chains[0].filters[-1].typed_config.Unpack(hcm)
    return hcm


def fields(hcm: Any) -> tuple[bool | None, bool, int]:
    normalize = hcm.normalize_path.value if hcm.HasField("normalize_path") else None
    return normalize, hcm.merge_slashes, hcm.path_with_escaped_slashes_action


def packed(message: Any) -> any_pb2.Any:
    out = any_pb2.Any()
    out.Pack(message)
    return out


LEVELS = [
    ("{}", (True, True, HCM.REJECT_REQUEST), DEFAULT_OPTIONS),
    ("{normalization: NONE}", (False, False, HCM.KEEP_UNCHANGED), UNCHANGED),
    ("{normalization: BASE}", (True, False, HCM.REJECT_REQUEST), PathOptions(True, False)),
    (
        "{normalization: BASE, escapedSlashes: KEEP}",
        (True, False, HCM.KEEP_UNCHANGED),
        PathOptions(True, False, KEEP_UNCHANGED),
    ),
    ("{normalization: MERGE_SLASHES}", (True, True, HCM.REJECT_REQUEST), DEFAULT_OPTIONS),
    (
        "{normalization: MERGE_SLASHES, escapedSlashes: REJECT}",
        (True, True, HCM.REJECT_REQUEST),
        DEFAULT_OPTIONS,
    ),
    (
        "{normalization: MERGE_SLASHES, escapedSlashes: KEEP}",
        (True, True, HCM.KEEP_UNCHANGED),
        PathOptions(True, True, KEEP_UNCHANGED),
    ),
    (
        "{normalization: DECODE_AND_MERGE_SLASHES}",
        (True, True, HCM.UNESCAPE_AND_FORWARD),
        PathOptions(True, True, UNESCAPE_AND_FORWARD),
    ),
]


@pytest.mark.parametrize(("spec", "expected", "options"), LEVELS)
def test_each_level_reaches_every_sidecar_listener_and_the_proxy(
    spec: str, expected: tuple[bool, bool, int], options: PathOptions
) -> None:
    push = load_push(with_paths(spec))
    sidecar = node("sidecar", "shop", "shop-a")
    outbound = one(sidecar, push, LISTENER_TYPE, OUTBOUND)
    inbound = one(sidecar, push, LISTENER_TYPE, INBOUND)
    assert fields(hcm_of(outbound)) == expected
    assert fields(inbound_hcm(inbound)) == expected
    for listener in (outbound, inbound):
        _, config = decode_listener(packed(listener))
        assert config.paths == options


def test_the_default_mesh_config_is_what_simulations_assume() -> None:
    push = load_push(MESH)
    listener = one(node("sidecar", "shop", "shop-a"), push, LISTENER_TYPE, INBOUND)
    assert decode_listener(packed(listener))[1].paths == DEFAULT_OPTIONS


def test_hosts_outside_the_mesh_are_not_normalized() -> None:
    push = load_push(with_paths("{normalization: DECODE_AND_MERGE_SLASHES}"))
    listener = one(node("sidecar", "shop"), push, LISTENER_TYPE, "trellis/outbound")
    assert fields(hcm_of(listener)) == (False, False, HCM.KEEP_UNCHANGED)
    assert decode_listener(packed(listener))[1].paths == UNCHANGED


def test_proxyless_listeners_state_no_normalization() -> None:
    push = load_push(with_paths("{normalization: DECODE_AND_MERGE_SLASHES}"))
    proxyless = node("proxyless", "shop", "shop-a")
    outbound = hcm_of(one(proxyless, push, LISTENER_TYPE, OUTBOUND))
    assert fields(outbound) == (None, False, HCM.IMPLEMENTATION_SPECIFIC_DEFAULT)
    server = one(proxyless, push, LISTENER_TYPE, "trellis/inbound?address=10.0.0.7:8080")
    inbound = inbound_hcm(server)
    assert fields(inbound) == (None, False, HCM.IMPLEMENTATION_SPECIFIC_DEFAULT)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("{normalization: NONE, escapedSlashes: KEEP}", "leaves paths as sent"),
        ("{normalization: DECODE_AND_MERGE_SLASHES, escapedSlashes: REJECT}", "decodes them"),
        ("{normalization: LOWERCASE}", "normalization"),
        ("{escapedSlashes: DECODE}", "escapedSlashes"),
        ("{normalisation: BASE}", "normalisation"),
    ],
)
def test_a_bad_setting_is_refused_with_its_field(spec: str, message: str) -> None:
    with pytest.raises(InvalidDocuments) as info:
        load_push(with_paths(spec))
    text = str(info.value)
    assert "spec.pathNormalization" in text and message in text, text


# -- the proxy's reading of the fields ----------------------------------------------------


def decoded(hcm: Any) -> PathOptions:
    listener = one(node("sidecar", "shop"), load_push(MESH), LISTENER_TYPE, OUTBOUND)
    manager = hcm_of(listener)
    manager.ClearField("normalize_path")
    manager.ClearField("merge_slashes")
    manager.ClearField("path_with_escaped_slashes_action")
    manager.MergeFrom(hcm)
    listener.api_listener.api_listener.Pack(manager)
    return decode_listener(packed(listener))[1].paths


def test_unset_fields_read_as_the_safe_choice() -> None:
    """An HCM that states nothing is normalized and refuses escaped slashes (Envoy's
    defaults, off and keep, would let `/%2e%2e/admin` past a policy on /admin)."""
    assert decoded(HCM()) == PathOptions(True, False, REJECT_REQUEST)


def test_unsupported_path_settings_are_refused() -> None:
    with pytest.raises(ConfigError, match="path_normalization_options: not supported"):
        decoded(HCM(path_normalization_options=HCM.PathNormalizationOptions()))
    with pytest.raises(ConfigError, match="path_with_escaped_slashes_action: unknown value 9"):
        decoded(HCM(path_with_escaped_slashes_action=9))  # type: ignore[arg-type]


# -- tunnels: CONNECT only to ports declared tcp ------------------------------------------


def connect_routes(listener: Any) -> dict[str, bool]:
    routes = inbound_hcm(listener).route_config.virtual_hosts[0].routes
    out = {}
    for route in routes:
        upgrades = list(route.route.upgrade_configs)
        out[route.name] = [u.upgrade_type for u in upgrades] == ["CONNECT"] and all(
            u.HasField("connect_config") for u in upgrades
        )
    return out


def test_routes_to_tcp_ports_accept_connect() -> None:
    push = load_push(MESH)
    listener = one(node("sidecar", "shop", "shop-a"), push, LISTENER_TYPE, INBOUND)
    assert connect_routes(listener) == {
        "port-8080": False,  # http, and the Service's http port targets it
        "port-5432": True,  # the Service's db port says tcp
        "port-9000": True,  # the Workload says tcp
        "port-9090": False,
        "default": False,  # the first port, 8080
    }
    assert decode_listener(packed(listener))[1].tunnel_ports == {5432, 9000}


def test_an_hcm_wide_connect_and_a_route_that_disables_it() -> None:
    push = load_push(MESH)
    listener = one(node("sidecar", "shop", "shop-a"), push, LISTENER_TYPE, INBOUND)
    hcm = inbound_hcm(listener)
    hcm.upgrade_configs.add(upgrade_type="connect")
    routes = hcm.route_config.virtual_hosts[0].routes
    off = next(r for r in routes if r.name == "port-9000").route.upgrade_configs[0]
    off.enabled.value = False
    listener.filter_chains[0].filters[-1].typed_config.Pack(hcm)
    assert decode_listener(packed(listener))[1].tunnel_ports == {8080, 5432, 9090}
