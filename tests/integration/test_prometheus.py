"""A real Prometheus finds every proxy through the control plane's HTTP service discovery,
scrapes each one's metrics listener with the scrape token, and answers an Istio-style
success-rate query per destination service that matches the traffic sent.

The mesh: `shop` and `cart` under `trellis run` (metrics listener on by default, registered
in their Workloads), and a standalone `trellis proxy` client whose Workload the test
applies with `spec.metrics.port` (how an operator lists a proxy it runs by hand). The
client sends 90 answers of 200 and 10 of 503 to shop (the demo app answers `?status=N`),
20 of 200 to cart. Prometheus (Debian's, on a free port, its own config and data dir,
stopped by PID) reads the token from a file, as an operator would configure it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.integration.dataplane import TRELLIS, client_sidecar, run_service
from tests.integration.harness import TOKEN, Mesh, Proc, free_port, wait_for

pytestmark = pytest.mark.integration

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
CLIENT_ID = "spiffe://trellis.local/ns/default/sa/client"
SUCCESS_RATE = (
    'sum by (destination_service_name) (trellis_requests_total{reporter="destination",'
    'response_code!~"5.."}) / sum by (destination_service_name) '
    '(trellis_requests_total{reporter="destination"})'
)


def trellis_metrics(mesh: Mesh, *args: str) -> str:
    """`trellis metrics ARGS` with the admin token; what it prints."""
    argv = [TRELLIS, "metrics", *args, "--server", mesh.cp.api]
    result = subprocess.run(
        argv, capture_output=True, text=True, timeout=60, env={**os.environ, "TRELLIS_TOKEN": TOKEN}
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def sd(mesh: Mesh, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return httpx.get(f"{mesh.cp.api}/api/v1/metrics/targets", headers=headers, timeout=5)


def start_prometheus(mesh: Mesh, credentials: Path) -> str:
    """Prometheus on a free port, discovering through the control plane; its URL."""
    home = mesh.tmp / "prometheus"
    auth = {"type": "Bearer", "credentials_file": str(credentials)}
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {
                "job_name": "trellis-proxies",
                "authorization": auth,
                "http_sd_configs": [
                    {
                        "url": f"{mesh.cp.api}/api/v1/metrics/targets",
                        "refresh_interval": "1s",
                        "authorization": auth,
                    }
                ],
            }
        ],
    }
    (home / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    argv = [
        PROMETHEUS,
        f"--config.file={home / 'prometheus.yml'}",
        f"--storage.tsdb.path={home / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--web.enable-lifecycle",
    ]
    proc = Proc(argv, name="prometheus")
    mesh.procs.append(proc)
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if proc.popen.poll() is not None:
            raise AssertionError("prometheus exited:\n" + "\n".join(proc.stderr_lines[-30:]))
        return httpx.get(f"{url}/-/ready", timeout=1).status_code == 200

    wait_for(ready, 30, "prometheus /-/ready")
    return url


def query(url: str, promql: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{url}/api/v1/query", params={"query": promql}, timeout=5)
    r.raise_for_status()
    body = r.json()
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def test_prometheus_discovers_scrapes_and_answers_the_success_rate(mesh: Mesh) -> None:
    if not Path(PROMETHEUS).exists():
        pytest.fail("Debian's prometheus is not installed: `make test` installs it")
    # The operator's steps: the token into a file for Prometheus, its digest for a proxy.
    (mesh.tmp / "prometheus").mkdir()
    credentials = mesh.tmp / "prometheus" / "scrape-token"
    trellis_metrics(mesh, "token", "--file", str(credentials))
    assert credentials.stat().st_mode & 0o777 == 0o600
    token = credentials.read_text().strip()
    digest = trellis_metrics(mesh, "token", "--sha256")
    assert digest == hashlib.sha256(token.encode()).hexdigest()
    assert httpx.get(f"{mesh.cp.api}/api/v1/metrics/scrape-token", timeout=5).status_code == 401
    shop = run_service(mesh, "shop", labels={"version": "v1"})
    cart = run_service(mesh, "cart")
    metrics_port, inbound_port = free_port(), free_port()
    client = client_sidecar(
        mesh,
        extra=(
            "--metrics",
            f"127.0.0.1:{metrics_port}",
            "--metrics-token-sha256",
            digest,
            "--inbound",
            f"127.0.0.1:{inbound_port}",
        ),
    )
    mesh.cp.apply(
        "apiVersion: trellis.dev/v1alpha1\nkind: Workload\n"
        "metadata: {name: client, labels: {app: client}}\n"
        f"spec: {{address: 127.0.0.1, inbound: {{port: {inbound_port}}},"
        f" metrics: {{port: {metrics_port}}}}}\n"
    )

    # Service discovery: refused without the scrape token or with a wrong one.
    assert sd(mesh, None).status_code == 401
    assert sd(mesh, "not-the-token").status_code == 401
    assert sd(mesh, TOKEN).status_code == 200  # the admin token reads it too
    groups = {g["labels"]["workload"]: g for g in sd(mesh, token).json()}
    assert json.loads(trellis_metrics(mesh, "targets")) == sd(mesh, token).json()
    assert set(groups) == {"client", shop.workload, cart.workload}, groups
    assert groups["client"]["targets"] == [f"127.0.0.1:{metrics_port}"]
    shop_labels = groups[shop.workload]["labels"]
    assert shop_labels["app"] == "shop" and shop_labels["version"] == "v1"
    assert shop_labels["service"] == "shop" and shop_labels["namespace"] == "default"
    assert shop_labels["mtls"] == "true" and shop_labels["__metrics_path__"] == "/metrics"

    # A proxy's metrics listener: the token or nothing.
    (shop_target,) = groups[shop.workload]["targets"]
    for headers in ({}, {"Authorization": "Bearer not-the-token"}, {"Authorization": token}):
        refused = httpx.get(f"http://{shop_target}/metrics", headers=headers, timeout=5)
        assert refused.status_code == 401 and "trellis_" not in refused.text
        assert refused.headers["www-authenticate"].startswith("Bearer")
    scraped = httpx.get(
        f"http://{shop_target}/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=5
    )
    assert scraped.status_code == 200 and "# TYPE trellis_requests_total counter" in scraped.text

    with client.client() as c:
        for i in range(100):
            status = 503 if i % 10 == 0 else 200
            r = c.get(f"http://shop:{shop.port}/item?status={status}")
            assert r.status_code == status
        for _ in range(20):
            assert c.get(f"http://cart:{cart.port}/").status_code == 200

    url = start_prometheus(mesh, credentials)

    def all_up() -> list[dict[str, Any]] | None:
        r = httpx.get(f"{url}/api/v1/targets", timeout=5).json()
        active = r["data"]["activeTargets"]
        if len(active) == 3 and all(t["health"] == "up" for t in active):
            return list(active)
        return None

    active = wait_for(all_up, 60, "prometheus to scrape the three proxies", interval=0.5)
    assert {t["labels"]["workload"] for t in active} == {"client", shop.workload, cart.workload}

    def rates() -> dict[str, float] | None:
        result = query(url, SUCCESS_RATE)
        got = {r["metric"]["destination_service_name"]: float(r["value"][1]) for r in result}
        totals = query(url, 'sum(trellis_requests_total{reporter="destination"})')
        if totals and float(totals[0]["value"][1]) == 120 and {"shop", "cart"} <= set(got):
            return got
        return None

    got = wait_for(rates, 60, "the success rates in prometheus", interval=0.5)
    assert got["shop"] == pytest.approx(0.9) and got["cart"] == pytest.approx(1.0), got

    # The same from the callers' side, and Istio's labels and the target's labels on a series.
    source = query(
        url,
        'sum by (destination_service_name) (trellis_requests_total{reporter="source",'
        'response_code="503"})',
    )
    assert {r["metric"]["destination_service_name"]: float(r["value"][1]) for r in source} == {
        "shop": 10.0
    }
    (series, *_) = query(
        url,
        'trellis_requests_total{reporter="destination",destination_service_name="shop",'
        'response_code="200"}',
    )
    labels = series["metric"]
    assert labels["source_workload"] == "client" and labels["source_principal"] == CLIENT_ID
    assert labels["connection_security_policy"] == "mutual_tls"
    assert labels["destination_version"] == "v1" and labels["destination_app"] == "shop"
    assert labels["workload"] == shop.workload and labels["app"] == "shop"
    # The caller knows its destination's app, version and canonical name from the
    # endpoint's metadata, as Istio's source reporter does from metadata exchange.
    (caller, *_) = query(
        url, 'trellis_requests_total{reporter="source",destination_service_name="shop"}'
    )
    for name, value in (
        ("destination_app", "shop"),
        ("destination_version", "v1"),
        ("destination_canonical_service", "shop"),
        ("destination_canonical_revision", "v1"),
        ("destination_workload", shop.workload),
        ("source_app", "client"),
        ("destination_principal", "spiffe://trellis.local/ns/default/sa/shop"),
    ):
        assert caller["metric"][name] == value, (name, caller["metric"])  # fmt: skip
    p99 = query(
        url,
        "histogram_quantile(0.99, sum by (le) (trellis_request_duration_milliseconds_bucket"
        '{reporter="destination",destination_service_name="shop"}))',
    )
    assert 0 < float(p99[0]["value"][1]) < 10_000


def test_the_metrics_listener_serves_only_metrics_and_only_with_the_token(mesh: Mesh) -> None:
    token = "a-scrape-token-for-this-test"
    digest = hashlib.sha256(token.encode()).hexdigest()
    port = free_port()
    client = client_sidecar(
        mesh,
        identity=False,
        extra=("--metrics", f"127.0.0.1:{port}", "--metrics-token-sha256", digest),
    )
    assert client.ready()
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base, timeout=5, trust_env=False) as c:
        # Without the token nothing is said, not even which paths exist.
        assert c.get("/config_dump").status_code == 401
        assert c.post("/metrics", content=b"x").status_code == 401
        assert c.get("/metrics", headers={"Authorization": f"Basic {token}"}).status_code == 401
        wrong = {"Authorization": "Bearer " + token[:-1]}
        assert c.get("/metrics", headers=wrong).status_code == 401
        # With it: /metrics and Envoy's /stats/prometheus, GET and HEAD, nothing else.
        assert c.get("/config_dump", headers=auth).status_code == 404
        assert c.post("/metrics", headers=auth, content=b"x").status_code == 405
        head = c.head("/metrics", headers=auth)
        assert head.status_code == 200 and head.content == b""
        for path in ("/metrics", "/stats/prometheus"):
            r = c.get(path, headers=auth)
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
            assert "trellis_metrics_series_limit 300" in r.text
            assert "trellis_metrics_scrapes_refused_total 4" in r.text
        # Any Host: Prometheus scrapes by address, and no browser can add the token.
        assert c.get("/metrics", headers={**auth, "Host": "evil.example"}).status_code == 200
