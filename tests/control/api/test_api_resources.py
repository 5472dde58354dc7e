"""Resource endpoints over real HTTP: CRUD, dryRun, auth, all-or-nothing validation."""

from __future__ import annotations

from typing import Any

import pytest
from tests.control.api.documents import route, service, workload
from tests.control.api.served import Api


async def state_of(api: Api) -> tuple[int, list[dict[str, Any]]]:
    """The store's revision and every document, as the API shows them."""
    revision = (await api.client.get("/healthz")).json()["revision"]
    docs: list[dict[str, Any]] = []
    for plural in (
        "services",
        "workloads",
        "httproutes",
        "grpcroutes",
        "destinationpolicies",
        "authorizationpolicies",
        "meshconfigs",
    ):
        docs.extend((await api.client.get(f"/api/v1/{plural}")).json()["items"])
    return revision, docs


async def test_put_get_list_delete_round_trip(api: Api) -> None:
    r = await api.client.put("/api/v1/services/reviews", json=service("reviews"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["dryRun"] is False and body["revision"] == 1
    assert body["changes"] == [
        {
            "key": "Service default/reviews",
            "kind": "Service",
            "namespace": "default",
            "name": "reviews",
            "action": "created",
        }
    ]
    again = (await api.client.put("/api/v1/services/reviews", json=service("reviews"))).json()
    assert again["changes"][0]["action"] == "unchanged" and again["revision"] == 1
    changed = (
        await api.client.put("/api/v1/services/reviews", json=service("reviews", port=9090))
    ).json()
    assert changed["changes"][0]["action"] == "configured" and changed["revision"] == 2

    got = (await api.client.get("/api/v1/services/reviews", params={"namespace": "default"})).json()
    assert got["spec"]["ports"][0]["port"] == 9090
    assert got["metadata"]["resourceVersion"] == 2
    listed = (await api.client.get("/api/v1/services")).json()
    assert listed["revision"] == 2 and [d["metadata"]["name"] for d in listed["items"]] == [
        "reviews"
    ]
    assert (await api.client.get("/api/v1/services", params={"namespace": "other"})).json()[
        "items"
    ] == []

    deleted = await api.client.delete("/api/v1/services/reviews")
    assert deleted.status_code == 200 and deleted.json()["changes"][0]["action"] == "deleted"
    missing = await api.client.get("/api/v1/services/reviews")
    assert missing.status_code == 404 and "not found" in missing.json()["error"]
    assert (await api.client.delete("/api/v1/services/reviews")).status_code == 404


async def test_namespace_from_the_query_fills_a_body_without_one(api: Api) -> None:
    doc = service("ratings")
    del doc["metadata"]["namespace"]
    r = await api.client.put("/api/v1/services/ratings", params={"namespace": "shop"}, json=doc)
    assert r.status_code == 200, r.text
    assert r.json()["changes"][0]["key"] == "Service shop/ratings"


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/api/v1/services/other", {}),  # name differs
        ("/api/v1/workloads/reviews", {}),  # kind differs
        ("/api/v1/services/reviews", {"namespace": "shop"}),  # namespace differs
    ],
)
async def test_put_body_must_agree_with_the_path(
    api: Api, path: str, params: dict[str, str]
) -> None:
    r = await api.client.put(path, params=params, json=service("reviews"))
    assert r.status_code == 400 and "path names" in r.json()["error"]
    assert (await state_of(api)) == (0, [])


async def test_mesh_config_is_cluster_scoped(api: Api) -> None:
    doc = {
        "apiVersion": "trellis.dev/v1alpha1",
        "kind": "MeshConfig",
        "metadata": {"name": "mesh"},
        "spec": {"trustDomain": "example.org"},
    }
    assert (await api.client.put("/api/v1/meshconfigs/mesh", json=doc)).status_code == 200
    got = await api.client.get("/api/v1/meshconfigs/mesh", params={"namespace": "ignored"})
    assert got.status_code == 200 and got.json()["spec"]["trustDomain"] == "example.org"


async def test_dry_run_reports_but_changes_nothing(api: Api) -> None:
    await api.client.put("/api/v1/services/reviews", json=service("reviews"))
    before = await state_of(api)
    r = await api.client.post(
        "/api/v1/apply",
        params={"dryRun": "true"},
        json={"documents": [service("ratings"), service("reviews", port=1234)]},
    )
    assert r.status_code == 200, r.text
    assert r.json()["dryRun"] is True
    assert [c["action"] for c in r.json()["changes"]] == ["created", "configured"]
    d = await api.client.delete("/api/v1/services/reviews", params={"dryRun": "true"})
    assert d.json()["changes"][0]["action"] == "deleted"
    p = await api.client.put("/api/v1/services/x", params={"dryRun": "true"}, json=service("x"))
    assert p.json()["changes"][0]["action"] == "created"
    assert await state_of(api) == before


async def test_writes_need_the_admin_token_reads_do_not(api: Api) -> None:
    for method, path, body in [
        ("PUT", "/api/v1/services/reviews", service("reviews")),
        ("DELETE", "/api/v1/services/reviews", None),
        ("POST", "/api/v1/apply", {"documents": [service("reviews")]}),
        ("POST", "/api/v1/delete", {"documents": [service("reviews")]}),
        ("POST", "/api/v1/registry/heartbeat", {"name": "x"}),
    ]:
        r = await api.anonymous.request(method, path, json=body)
        assert r.status_code == 401, (method, path)
        assert "Authorization: Bearer" in r.json()["error"] and "TRELLIS_TOKEN" in r.json()["error"]
        bad = await api.anonymous.request(
            method, path, json=body, headers={"Authorization": "Bearer nope"}
        )
        assert bad.status_code == 401 and "invalid admin token" in bad.json()["error"]
    assert await state_of(api) == (0, [])
    assert (await api.anonymous.get("/api/v1/services")).status_code == 200
    assert (await api.anonymous.get("/healthz")).json() == {"status": "ok", "revision": 0}


async def test_apply_is_atomic_and_lists_one_change_per_document(api: Api) -> None:
    docs = [
        service("reviews"),
        service("reviews-v2", selector={"app": "reviews", "version": "v2"}),
        route("split", "reviews", {"reviews": 80, "reviews-v2": 20}),
    ]
    r = await api.client.post("/api/v1/apply", json={"documents": docs, "source": "mesh.yaml"})
    assert r.status_code == 200, r.text
    assert [(c["kind"], c["name"], c["action"]) for c in r.json()["changes"]] == [
        ("Service", "reviews", "created"),
        ("Service", "reviews-v2", "created"),
        ("HTTPRoute", "split", "created"),
    ]
    assert r.json()["revision"] == 1  # one transaction, one revision
    gone = await api.client.post(
        "/api/v1/delete",
        json={
            "documents": [
                {"kind": "HTTPRoute", "metadata": {"name": "split"}},
                {"kind": "Service", "metadata": {"name": "nope"}},
            ]
        },
    )
    assert [c["action"] for c in gone.json()["changes"]] == ["deleted", "absent"]


BAD_DOCUMENTS: list[tuple[str, dict[str, Any], str, str]] = [
    ("unknown kind", {**service("x"), "kind": "Gateway"}, "kind", "unknown kind"),
    (
        "wrong type",
        {**service("x"), "spec": {"ports": [{"port": "nine"}]}},
        "spec.ports[0].port",
        "integer",
    ),
    (
        "negative weight",
        route("r", "reviews", {"reviews": -1}),
        "spec.rules[0].backendRefs[0].weight",
        "greater than or equal",
    ),
    (
        "unknown service",
        route("r", "reviews", {"nosuch": 1}),
        "spec.rules[0].backendRefs[0]",
        "unknown service default/nosuch",
    ),
    (
        "bad regex",
        route(
            "r",
            "reviews",
            {"reviews": 1},
            matches=[{"path": {"type": "RegularExpression", "value": "(["}}],
        ),
        "spec.rules[0].matches[0].path",
        "regular expression",
    ),
    (
        "backendRequest > request",
        route("r", "reviews", {"reviews": 1}, timeouts={"request": "1s", "backendRequest": "2s"}),
        "spec.rules[0].timeouts",
        "must not be longer",
    ),
]


@pytest.mark.parametrize(
    ("what", "bad", "path", "reason"), BAD_DOCUMENTS, ids=[b[0] for b in BAD_DOCUMENTS]
)
async def test_one_bad_document_rejects_the_whole_apply(
    api: Api, what: str, bad: dict[str, Any], path: str, reason: str
) -> None:
    await api.client.put("/api/v1/services/reviews", json=service("reviews"))
    before = await state_of(api)
    docs = [service("ratings"), bad, workload("ratings-1", {"app": "ratings"})]
    r = await api.client.post("/api/v1/apply", json={"documents": docs, "source": "mesh.yaml"})
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["error"] == "invalid"
    (problem,) = body["problems"]
    assert problem["index"] == 1 and problem["source"] == "mesh.yaml"
    assert any(e["path"].startswith(path) and reason in e["reason"] for e in problem["errors"]), (
        problem
    )
    assert await state_of(api) == before


async def test_references_see_documents_of_the_same_apply_and_the_store(api: Api) -> None:
    await api.client.put("/api/v1/services/reviews", json=service("reviews"))
    r = await api.client.post(
        "/api/v1/apply",
        json={
            "documents": [
                route("r", "reviews", {"ratings": 1}),
                service("ratings"),
            ]
        },
    )
    assert r.status_code == 200, r.text
    bad_put = await api.client.put(
        "/api/v1/httproutes/q", json=route("q", "reviews", {"nosuch": 1})
    )
    assert bad_put.status_code == 422


async def test_duplicate_documents_in_one_apply_are_rejected(api: Api) -> None:
    r = await api.client.post(
        "/api/v1/apply", json={"documents": [service("a"), service("a", port=1)]}
    )
    assert r.status_code == 422 and "also appears" in r.text
    assert await state_of(api) == (0, [])


async def test_unknown_plural_and_malformed_bodies(api: Api) -> None:
    r = await api.client.get("/api/v1/gateways")
    assert r.status_code == 404 and "services" in r.json()["error"]
    bad = await api.client.post("/api/v1/apply", json={"docs": []})
    assert bad.status_code == 422 and bad.json()["error"].startswith("invalid request")
    bad_delete = await api.client.post("/api/v1/delete", json={"documents": [{"kind": "Nope"}]})
    assert bad_delete.status_code == 422
    assert {e["path"] for e in bad_delete.json()["problems"][0]["errors"]} == {
        "kind",
        "metadata.name",
    }


async def test_openapi_lists_the_paths(api: Api) -> None:
    spec = (await api.anonymous.get("/openapi.json")).json()
    for path in [
        "/healthz",
        "/api/v1/{plural}",
        "/api/v1/{plural}/{name}",
        "/api/v1/apply",
        "/api/v1/delete",
        "/api/v1/registry/register",
        "/api/v1/registry/heartbeat",
        "/api/v1/registry/deregister",
        "/api/v1/status",
        "/api/v1/describe/services/{name}",
        "/api/v1/info",
    ]:
        assert path in spec["paths"], path
    assert "ApplyRequest" in spec["components"]["schemas"]
