"""Strict types across the resource model: YAML and JSON get the same answer, path and reason.

A boolean is never a number, a number never a boolean, a string of digits never an
integer, `5.0` never an integer; a number field (float) takes an integer; durations are
strings (GEP-2257). What the store writes back (canonical JSON) validates again.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from trellis.model import Document, InvalidDocument, parse_document
from trellis.model.errors import InvalidDocuments
from trellis.model.loader import load_documents

API = "trellis.dev/v1alpha1"


def service(**port: Any) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "Service",
        "metadata": {"name": "reviews", "namespace": "shop", "labels": {"app": "reviews"}},
        "spec": {"selector": {"app": "reviews"}, "ports": [{"port": 9080, **port}]},
    }


def route(**rule: Any) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "HTTPRoute",
        "metadata": {"name": "r", "namespace": "shop"},
        "spec": {
            "parentRefs": [{"name": "reviews", "port": 9080}],
            "rules": [{"backendRefs": [{"name": "reviews", "weight": 10}], **rule}],
        },
    }


def workload(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "Workload",
        "metadata": {"name": "w", "namespace": "shop", "labels": {"app": "reviews"}},
        "spec": {"address": "10.0.0.1", "proxyless": True, **spec},
    }


def mesh(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": API, "kind": "MeshConfig", "metadata": {"name": "mesh"}, "spec": spec}


def policy(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "AuthorizationPolicy",
        "metadata": {"name": "a", "namespace": "shop"},
        "spec": spec,
    }


def destination(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "DestinationPolicy",
        "metadata": {"name": "d", "namespace": "shop"},
        "spec": {"service": "reviews", **spec},
    }


def set_in(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """`doc` with the value at a dotted path (`spec.rules.0.backendRefs.0.weight`) replaced."""
    *parents, last = path.split(".")
    node: Any = doc
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    node[int(last) if last.isdigit() else last] = value
    return doc


# (document, dotted path to set, bad value, the error's field path, the reason it gives)
REJECTED = [
    # integers: ports, weights, counts, status codes
    (service(), "spec.ports.0.port", True, "spec.ports[0].port", "got boolean true"),
    (service(), "spec.ports.0.port", "9080", "spec.ports[0].port", "got string '9080'"),
    (service(), "spec.ports.0.port", 9080.0, "spec.ports[0].port", "got number 9080.0"),
    (route(), "spec.rules.0.backendRefs.0.weight", True, None, "must be an integer, got boolean"),
    (route(), "spec.rules.0.backendRefs.0.weight", False, None, "got boolean false"),
    (route(), "spec.rules.0.backendRefs.0.weight", "5", None, "must be an integer, got string"),
    (route(), "spec.rules.0.backendRefs.0.weight", 5.0, None, "must be an integer, got number"),
    (route(), "spec.parentRefs.0.port", True, "spec.parentRefs[0].port", "got boolean true"),
    (workload(), "spec.weight", True, "spec.weight", "must be an integer, got boolean true"),
    (
        route(retry={"codes": [503], "attempts": 2}),
        "spec.rules.0.retry.codes.0",
        "503",
        "spec.rules[0].retry.codes[0]",
        "must be an integer, got string '503'",
    ),
    (
        route(retry={"attempts": 2}),
        "spec.rules.0.retry.attempts",
        True,
        "spec.rules[0].retry.attempts",
        "must be an integer",
    ),
    (
        route(filters=[{"type": "RequestRedirect", "requestRedirect": {"statusCode": 301}}]),
        "spec.rules.0.filters.0.requestRedirect.statusCode",
        301.0,
        "spec.rules[0].filters[0].requestRedirect.statusCode",
        "must be an integer, got number 301.0",
    ),
    (
        route(filters=[{"type": "RequestRedirect", "requestRedirect": {"statusCode": 301}}]),
        "spec.rules.0.filters.0.requestRedirect.statusCode",
        "301",
        "spec.rules[0].filters[0].requestRedirect.statusCode",
        "must be one of",
    ),
    (
        destination(outlierDetection={"maxEjectionPercent": 10}),
        "spec.outlierDetection.maxEjectionPercent",
        "10",
        "spec.outlierDetection.maxEjectionPercent",
        "must be an integer, got string '10'",
    ),
    (
        policy(rules=[{"to": [{"operation": {"ports": [80]}}]}]),
        "spec.rules.0.to.0.operation.ports.0",
        "80",
        "spec.rules[0].to[0].operation.ports[0]",
        "must be an integer, got string '80'",
    ),
    # a port number or a port name, never a boolean nor a string of digits
    (service(), "spec.ports.0.targetPort", True, "spec.ports[0].targetPort", "got boolean true"),
    (service(), "spec.ports.0.targetPort", "8080", "spec.ports[0].targetPort", "got string '8080'"),
    (service(), "spec.ports.0.targetPort", 8080.0, "spec.ports[0].targetPort", "got number"),
    # numbers (percentages): a boolean, a string, NaN and infinity are refused
    (
        route(fault={"delay": {"fixedDelay": "1s", "percent": 50}}),
        "spec.rules.0.fault.delay.percent",
        True,
        "spec.rules[0].fault.delay.percent",
        "must be a number, got boolean true",
    ),
    (
        route(fault={"delay": {"fixedDelay": "1s", "percent": 50}}),
        "spec.rules.0.fault.delay.percent",
        "50",
        "spec.rules[0].fault.delay.percent",
        "must be a number, got string '50'",
    ),
    (
        mesh(tracing={"sampling": 1}),
        "spec.tracing.sampling",
        float("nan"),
        "spec.tracing.sampling",
        "must be a finite number",
    ),
    (
        mesh(tracing={"sampling": 1}),
        "spec.tracing.sampling",
        float("inf"),
        "spec.tracing.sampling",
        "must be a finite number",
    ),
    # booleans
    (workload(), "spec.proxyless", 1, "spec.proxyless", "must be a boolean (true or false)"),
    (workload(), "spec.proxyless", "true", "spec.proxyless", "got string 'true'"),
    (workload(mtls=False), "spec.mtls", 0, "spec.mtls", "got integer 0"),
    (policy(dryRun=False), "spec.dryRun", "false", "spec.dryRun", "got string 'false'"),
    # durations are strings
    (
        route(timeouts={"request": "10s"}),
        "spec.rules.0.timeouts.request",
        10,
        "spec.rules[0].timeouts.request",
        "a duration is a string such as '10s'",
    ),
    (
        mesh(certificateTTL="24h"),
        "spec.certificateTTL",
        True,
        "spec.certificateTTL",
        "a duration is a string such as '10s' or '1m30s' (GEP-2257), got boolean true",
    ),
    # label maps take strings only
    (service(), "metadata.labels.app", 2, "metadata.labels.app", "must be a string, got integer 2"),
    (service(), "spec.selector.app", True, "spec.selector.app", "got boolean true"),
    (service(), "metadata.annotations", {"a": 1.5}, "metadata.annotations.a", "got number 1.5"),
    # strings take strings only
    (service(), "metadata.name", 5, "metadata.name", "must be a string, got integer 5"),
    (workload(), "spec.address", 167772161, "spec.address", "must be a string"),
    # shapes
    (service(), "spec.ports", {"port": 1}, "spec.ports", "must be a list, got a mapping"),
    (service(), "spec", [1], "spec", "must be a mapping, got a list"),
]


def _errors_from_json(raw: dict[str, Any]) -> list[tuple[str, str]]:
    """The REST API's path: JSON text, parsed, then `parse_document`."""
    with pytest.raises(InvalidDocument) as info:
        parse_document(json.loads(json.dumps(raw)))
    return [(e.path, e.reason) for e in info.value.error.errors]


def _errors_from_yaml(raw: dict[str, Any]) -> list[tuple[str, str]]:
    """The CLI's path: YAML text through the loader (here written by PyYAML from `raw`)."""
    with pytest.raises(InvalidDocuments) as info:
        load_documents(yaml.safe_dump(raw), source="m.yaml")
    (problem,) = info.value.problems
    assert problem.source == "m.yaml" and all(e.line is not None for e in problem.errors)
    return [(e.path, e.reason) for e in problem.errors]


@pytest.mark.parametrize(("doc", "where", "bad", "path", "reason"), REJECTED)
def test_a_value_of_the_wrong_type_is_rejected_the_same_from_yaml_and_json(
    doc: dict[str, Any], where: str, bad: Any, path: str | None, reason: str
) -> None:
    parse_document(json.loads(json.dumps(doc)))  # the document is valid as written
    raw = set_in(json.loads(json.dumps(doc)), where, bad)
    from_json = _errors_from_json(raw)  # NaN and Infinity too: Python's json reads them
    from_yaml = _errors_from_yaml(raw)
    assert from_json == from_yaml
    (error,) = from_json
    want_path = path or where.replace(".0", "[0]")
    assert error == (want_path, error[1]) and reason in error[1], error


ACCEPTED = [
    # a number field takes an integer; 0 and false are values, not "missing"
    (
        route(fault={"delay": {"fixedDelay": "1s", "percent": 50}}),
        "spec.rules.0.fault.delay.percent",
    ),
    (mesh(tracing={"sampling": 0}), "spec.tracing.sampling"),
    (route(), "spec.rules.0.backendRefs.0.weight"),
    (service(targetPort="http"), "spec.ports.0.targetPort"),
    (service(targetPort=8080), "spec.ports.0.targetPort"),
    (workload(mtls=False), "spec.mtls"),
]


@pytest.mark.parametrize(("doc", "where"), ACCEPTED)
def test_values_of_the_right_type_are_accepted(doc: dict[str, Any], where: str) -> None:
    (from_yaml,) = load_documents(yaml.safe_dump(doc))
    assert parse_document(json.loads(json.dumps(doc))) == from_yaml


def test_a_float_field_given_an_integer_holds_a_float() -> None:
    doc = parse_document(mesh(tracing={"sampling": 5}))
    sampling = doc.to_dict()["spec"]["tracing"]["sampling"]  # type: ignore[index]
    assert sampling == 5.0 and isinstance(sampling, float)


EVERY_KIND = """\
apiVersion: trellis.dev/v1alpha1
kind: Service
metadata: {name: reviews, namespace: shop, labels: {app: reviews, version: "2"}}
spec:
  selector: {app: reviews}
  ports:
  - {name: http, port: 9080, targetPort: http, protocol: http}
  - {name: admin, port: 9090, targetPort: 19090}
---
apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: {name: reviews-1, namespace: shop, labels: {app: reviews}, annotations: {note: "yes"}}
spec: {address: 10.0.0.7, ports: [{name: http, port: 9080}], inbound: {port: 15006},
       weight: 3, mtls: true, locality: {region: eu, zone: eu-1}}
---
apiVersion: trellis.dev/v1alpha1
kind: HTTPRoute
metadata: {name: split, namespace: shop}
spec:
  parentRefs: [{name: reviews, port: 9080}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /api}, headers: [{name: x-v, value: "2"}]}]
    filters:
    - {type: RequestMirror, requestMirror: {backendRef: {name: reviews}, percent: 10}}
    backendRefs: [{name: reviews, port: 9080, weight: 0}, {name: reviews, weight: 100}]
    timeouts: {request: 10s, backendRequest: 2s}
    retry: {codes: [502, 503], attempts: 3, backoff: 25ms}
    fault: {delay: {fixedDelay: 100ms, percent: 1}, abort: {httpStatus: 503, percent: 0.5}}
  - filters:
    - {type: RequestRedirect, requestRedirect: {statusCode: 301, port: 8443, scheme: https}}
---
apiVersion: trellis.dev/v1alpha1
kind: DestinationPolicy
metadata: {name: reviews, namespace: shop}
spec:
  service: reviews
  loadBalancer: {type: RING_HASH, ringHash: {header: x-user, minimumRingSize: 64}}
  connectionPool: {maxConnections: 10, idleTimeout: 30s}
  outlierDetection: {consecutive5xxErrors: 5, interval: 5s, maxEjectionPercent: 50}
---
apiVersion: trellis.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: shop}
spec:
  action: DENY
  dryRun: false
  rules: [{to: [{operation: {paths: [/admin*], ports: [9080]}}]}]
---
apiVersion: trellis.dev/v1alpha1
kind: MeshConfig
metadata: {name: mesh}
spec: {certificateTTL: 12h, tracing: {sampling: 5}, mtls: {mode: PERMISSIVE}}
"""


def test_every_field_kind_round_trips_as_the_store_and_the_api_write_it() -> None:
    docs = load_documents(EVERY_KIND)
    assert len(docs) == 6
    for doc in docs:
        stored = json.dumps(doc.to_dict(), sort_keys=True)  # what SqliteStore writes
        again: Document = parse_document(json.loads(stored))
        assert again == doc
        shown = yaml.safe_dump(doc.to_dict())  # what `trellis get -o yaml` prints
        assert load_documents(shown) == [doc]
