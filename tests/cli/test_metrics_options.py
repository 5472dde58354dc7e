"""`trellis proxy` / `trellis run` metrics options: the listener needs the scrape token's
digest, bad values are named, and a usable set becomes ProxyOptions."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from trellis.cli import proxy, run

TRELLIS = str(Path(sys.executable).with_name("trellis"))
DIGEST = hashlib.sha256(b"scrape").hexdigest()


def test_metrics_options_become_proxy_options() -> None:
    args = proxy.parser().parse_args(
        ["--control", "a:1", "--workload", "w", "--metrics", "10.0.0.5:15090",
         "--metrics-token-sha256", DIGEST.upper(), "--metrics-max-series", "50"]
    )  # fmt: skip
    options = proxy.options_from(args)
    assert options.metrics is not None and str(options.metrics) == "10.0.0.5:15090"
    assert options.metrics_token_sha256 == DIGEST and options.metrics_max_series == 50
    off = proxy.options_from(proxy.parser().parse_args(["--control", "a:1", "--workload", "w"]))
    assert off.metrics is None and off.metrics_max_series == 300


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--metrics", "0.0.0.0:15090"], "--metrics-token-sha256: the metrics listener needs"),
        (["--metrics", "0.0.0.0:15090", "--metrics-token-sha256", "abc"], "64 hex digits"),
        (["--metrics", "nope", "--metrics-token-sha256", DIGEST], "--metrics: 'nope'"),
        (["--metrics-max-series", "0"], "--metrics-max-series: must be at least 1"),
    ],
)
def test_bad_metrics_options_are_named_and_exit_2(extra: list[str], message: str) -> None:
    argv = [TRELLIS, "proxy", "--control", "127.0.0.1:1", "--workload", "w", *extra]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert message in result.stderr


def test_run_has_a_metrics_listener_unless_told_not_to() -> None:
    args, _, _ = run.parse(["--service", "web", "--", "true"])
    assert args.metrics_port == 15090 and not args.no_metrics
    args, _, _ = run.parse(["--service", "web", "--no-metrics", "--", "true"])
    assert args.no_metrics


def test_run_refuses_a_bad_digest() -> None:
    argv = [TRELLIS, "run", "--service", "w", "--metrics-token-sha256", "xyz", "--", "true"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "64 hex digits" in result.stderr
