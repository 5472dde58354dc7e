"""Where a proxy's own labels come from (Istio's rules for app, version, canonical name and
revision), the peer header that carries them to the destination, and what a caller's
header may not claim."""

from __future__ import annotations

from trellis.proxy.telemetry.recorder import Identity, parse_peer, principal_namespace


def test_istios_rules_for_canonical_name_and_revision() -> None:
    bare = Identity.of("shop-7f", "default", {})
    assert (bare.app, bare.version) == ("shop-7f", "unknown")
    assert (bare.canonical_service, bare.canonical_revision) == ("shop-7f", "latest")
    labelled = Identity.of("shop-7f", "default", {"app": "shop", "version": "v2"})
    assert (labelled.app, labelled.version) == ("shop", "v2")
    assert (labelled.canonical_service, labelled.canonical_revision) == ("shop", "v2")
    explicit = Identity.of(
        "shop-7f",
        "default",
        {
            "app": "shop",
            "version": "v2",
            "service.istio.io/canonical-name": "storefront",
            "service.istio.io/canonical-revision": "2024-01",
        },
    )
    assert (explicit.canonical_service, explicit.canonical_revision) == ("storefront", "2024-01")


def test_the_peer_header_reads_back_and_leaves_out_unsafe_values() -> None:
    me = Identity.of("shop-7f", "shop-ns", {"app": "shop", "version": "v 2"})
    fields = parse_peer(me.peer_header().decode())
    assert fields == {
        "workload": "shop-7f",
        "namespace": "shop-ns",
        "app": "shop",
        "cs": "shop",
    }  # version and revision "v 2" are no value a header may carry: not sent


def test_a_peer_header_is_read_strictly() -> None:
    assert parse_peer(None) == {} and parse_peer("") == {}
    assert parse_peer('workload=a;evil=x;app=b"c;version=' + "v" * 200) == {"workload": "a"}
    # At most 8 fields are read, whatever follows.
    many = ";".join(f"x{i}=y" for i in range(10)) + ";workload=late"
    assert parse_peer(many) == {}


def test_the_namespace_of_a_principal() -> None:
    assert principal_namespace("spiffe://trellis.local/ns/shop/sa/web") == "shop"
    assert principal_namespace("spiffe://trellis.local/sa/web") == ""
    assert principal_namespace("") == ""
