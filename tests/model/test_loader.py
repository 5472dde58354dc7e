"""Parsing and validating documents: every error names the document, field path, reason, line."""

from __future__ import annotations

from pathlib import Path

import pytest

from trellis.model import KINDS, MeshConfig, Service
from trellis.model.duration import parse_duration
from trellis.model.errors import InvalidDocuments
from trellis.model.keys import ResourceKey
from trellis.model.loader import load_documents, load_paths
from trellis.model.references import check_references, key_of

SERVICE = """
apiVersion: trellis.dev/v1alpha1
kind: Service
metadata: {name: reviews, namespace: shop}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080, targetPort: http}]
"""


def errors_of(text: str) -> list[str]:
    with pytest.raises(InvalidDocuments) as info:
        load_documents(text, source="mesh.yaml")
    return [str(p) for p in info.value.problems]


def test_valid_service_round_trips() -> None:
    (doc,) = load_documents(SERVICE)
    assert isinstance(doc, Service)
    assert doc.namespace == "shop" and doc.spec.ports[0].target_port == "http"
    again = load_documents(__import__("yaml").safe_dump(doc.to_dict()))[0]
    assert again == doc


def test_every_kind_has_a_plural_and_parses_minimal_documents() -> None:
    assert set(KINDS) == {
        "Service",
        "Workload",
        "HTTPRoute",
        "GRPCRoute",
        "DestinationPolicy",
        "AuthorizationPolicy",
        "RateLimitPolicy",
        "MeshConfig",
    }
    assert MeshConfig().spec.mtls.mode == "STRICT"


def test_unknown_kind_is_named() -> None:
    (err,) = errors_of("apiVersion: trellis.dev/v1alpha1\nkind: Gateway\nmetadata: {name: x}\n")
    assert "kind: unknown kind 'Gateway'" in err and "mesh.yaml:2" in err


def test_wrong_type_names_the_field_and_its_line() -> None:
    text = SERVICE.replace("port: 9080", "port: nine")
    (err,) = errors_of(text)
    assert "Service shop/reviews" in err
    assert "spec.ports[0].port" in err
    assert "mesh.yaml:7:" in err


def test_unknown_field_is_rejected() -> None:
    (err,) = errors_of(SERVICE.replace("selector:", "selectr:"))
    assert "spec.selectr: unknown field" in err


def test_negative_weight_bad_regex_and_timeouts_are_all_reported() -> None:
    text = """
apiVersion: trellis.dev/v1alpha1
kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{name: reviews}]
  rules:
  - matches: [{path: {type: RegularExpression, value: "(["}}]
    backendRefs: [{name: reviews, weight: -1}]
    timeouts: {request: 1s, backendRequest: 2s}
"""
    errs = "\n".join(errors_of(text))
    assert "spec.rules[0].matches[0].path: invalid regular expression" in errs
    assert "spec.rules[0].backendRefs[0].weight" in errs
    assert "backendRequest (2s) must not be longer than request (1s)" in errs


def test_a_bad_document_in_a_stream_rejects_the_stream() -> None:
    errs = errors_of(
        SERVICE + "---\n" + SERVICE.replace("reviews, namespace", "Bad_Name, namespace")
    )
    assert len(errs) == 1 and "metadata.name" in errs[0]


def test_invalid_yaml_reports_a_line() -> None:
    (err,) = errors_of("kind: [unclosed\n")
    assert "not valid YAML" in err


def test_workload_needs_exactly_one_way_in() -> None:
    text = """
apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: {name: w, labels: {app: reviews}}
spec: {address: 127.0.0.1, proxyless: true, inbound: {port: 15006}}
"""
    (err,) = errors_of(text)
    assert "exactly one of inbound" in err
    ok = load_documents(text.replace(", inbound: {port: 15006}", ""))[0]
    assert ok.service_account == "reviews"  # type: ignore[attr-defined]


def test_mesh_config_is_a_singleton() -> None:
    (err,) = errors_of(
        "apiVersion: trellis.dev/v1alpha1\nkind: MeshConfig\nmetadata: {name: other}\n"
    )
    assert "singleton" in err


@pytest.mark.parametrize(
    ("text", "seconds"), [("10s", 10), ("1m30s", 90), ("250ms", 0.25), ("1h", 3600), ("0s", 0)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["10", "1.5s", "-1s", "1d", "", "1s1s1s1s1s"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="GEP-2257"):
        parse_duration(text)


def test_references_to_unknown_services_and_ports() -> None:
    (svc,) = load_documents(SERVICE)
    (route,) = load_documents("""
apiVersion: trellis.dev/v1alpha1
kind: HTTPRoute
metadata: {name: r, namespace: shop}
spec:
  parentRefs: [{name: reviews, port: 1234}]
  rules: [{backendRefs: [{name: ratings}]}]
""")
    world = {key_of(svc): svc, key_of(route): route}
    (problem,) = check_references(world, [key_of(route)])
    text = str(problem)
    assert "spec.parentRefs[0].port: service shop/reviews has no port 1234" in text
    assert "spec.rules[0].backendRefs[0]: unknown service shop/ratings" in text
    assert check_references(world, [ResourceKey("Service", "shop", "reviews")]) == []


def test_load_paths_reads_a_directory(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(SERVICE)
    (tmp_path / "b.yml").write_text(SERVICE.replace("reviews", "ratings"))
    (tmp_path / "notes.txt").write_text("ignored")
    docs = load_paths([tmp_path])
    assert [d.name for d in docs] == ["reviews", "ratings"]
