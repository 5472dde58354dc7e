"""`trellis describe service` shows the resilience settings in force: the retry budget (on
by default, with no DestinationPolicy), circuit-breaker limits, outlier detection, the
load balancer's panic threshold and locality failover — through a real control plane."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.control_plane import ControlPlane

SERVICE = """\
apiVersion: trellis.dev/v1alpha1
kind: Service
metadata: {name: reviews, namespace: pol-ns}
spec:
  selector: {app: reviews}
  ports: [{port: 9080}]
"""
POLICY = """\
---
apiVersion: trellis.dev/v1alpha1
kind: DestinationPolicy
metadata: {name: reviews, namespace: pol-ns}
spec:
  service: reviews
  retryBudget: {percent: 50, minRetriesPerSecond: 3, ttl: 30s}
  connectionPool: {maxConnections: 4, maxPendingRequests: 2}
  outlierDetection: {consecutive5xxErrors: 3, failurePercentageThreshold: 40}
  loadBalancer: {healthyPanicThreshold: 30, localityLbSetting: {enabled: true}}
"""


def test_describe_shows_the_default_budget_then_the_policy(
    cp: ControlPlane, tmp_path: Path
) -> None:
    manifest = tmp_path / "svc.yaml"
    manifest.write_text(SERVICE)
    assert cp.run("apply", "-f", str(manifest)).returncode == 0
    r = cp.run("describe", "service", "reviews", "-n", "pol-ns")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert "Policy:      <none> (defaults)" in lines
    assert "  Retry budget:     20% of requests + 10/s, ttl 10s" in lines
    assert (
        "  Circuit breakers: maxConnections=1024 maxPendingRequests=1024 maxRequests=1024 "
        "maxRetries=3" in lines
    )
    assert "  Outlier:          <off>" in lines
    assert "  Load balancer:    LEAST_REQUEST, panic below 50% healthy" in lines

    manifest.write_text(SERVICE + POLICY)
    assert cp.run("apply", "-f", str(manifest)).returncode == 0
    r = cp.run("describe", "service", "reviews", "-n", "pol-ns")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert "Policy:      pol-ns/reviews" in lines
    assert "  Retry budget:     50% of requests + 3/s, ttl 30s" in lines
    assert (
        "  Circuit breakers: maxConnections=4 maxPendingRequests=2 maxRequests=1024 "
        "maxRetries=3" in lines
    )
    outlier = next(line for line in lines if line.startswith("  Outlier:"))
    assert "consecutive5xxErrors=3" in outlier and "failurePercentageThreshold=40" in outlier
    assert "  Load balancer:    LEAST_REQUEST, panic below 30% healthy, locality failover" in lines

    raw = cp.run("describe", "service", "reviews", "-n", "pol-ns", "--json")
    assert raw.returncode == 0, raw.stderr
    policy = json.loads(raw.stdout)["policy"]
    assert policy["retryBudget"] == {"percent": 50, "minRetriesPerSecond": 3, "ttl": "30s"}
    assert policy["circuitBreakers"]["maxPendingRequests"] == 2


RATE_LIMIT = """\
---
apiVersion: trellis.dev/v1alpha1
kind: RateLimitPolicy
metadata: {name: reviews-20rps, namespace: pol-ns}
spec:
  service: reviews
  local: {requests: 20, per: 1s, burst: 40}
"""


def test_apply_get_and_describe_a_rate_limit_policy(cp: ControlPlane, tmp_path: Path) -> None:
    manifest = tmp_path / "rl.yaml"
    manifest.write_text(SERVICE + RATE_LIMIT)
    applied = cp.run("apply", "-f", str(manifest))
    assert applied.returncode == 0, applied.stderr
    assert "ratelimitpolicy/reviews-20rps" in applied.stdout
    got = cp.run("get", "ratelimitpolicies", "-n", "pol-ns")
    assert got.returncode == 0, got.stderr
    (row,) = [line.split() for line in got.stdout.splitlines() if "reviews-20rps" in line]
    assert row[:6] == ["pol-ns", "reviews-20rps", "reviews", "inbound", "20/1s", "<service>"]
    r = cp.run("describe", "service", "reviews", "-n", "pol-ns")
    assert r.returncode == 0, r.stderr
    assert "  Rate limit:       reviews-20rps: inbound 20 per 1s (burst 40)" in r.stdout
    # A bad one is refused whole, with its field and reason.
    manifest.write_text(RATE_LIMIT.replace("per: 1s", "per: 1ms"))
    bad = cp.run("apply", "-f", str(manifest))
    assert bad.returncode != 0
    assert "spec.local.per" in bad.stderr and "50ms" in bad.stderr, bad.stderr
