"""`trellis control` restarted: token printed once, state kept, SIGTERM exits cleanly."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from tests.cli.control_plane import control_plane

SERVICE = """\
apiVersion: trellis.dev/v1alpha1
kind: Service
metadata: {name: kept}
spec: {selector: {app: kept}, ports: [{port: 80}]}
"""


def test_restart_keeps_state_and_token_and_prints_the_token_only_once(tmp_path: Path) -> None:
    manifest = tmp_path / "kept.yaml"
    manifest.write_text(SERVICE)
    with control_plane(tmp_path) as first:
        assert first.banner[2] == "admin token: cli-test-token"
        # The API tells clients (trellis run) where the xDS server is.
        info = httpx.get(f"{first.api_url}/api/v1/info", timeout=10).json()
        assert info["xds"] == first.xds_address
        assert first.run("apply", "-f", str(manifest)).returncode == 0
    config = Path(first.env["TRELLIS_CONFIG"])
    config.unlink()  # a restart must not write it again: it no longer knows the token
    with control_plane(tmp_path, banner_lines=2) as second:
        assert not any("admin token" in line for line in second.banner)
        assert not config.exists()
        env = {**second.env, "TRELLIS_SERVER": second.api_url, "TRELLIS_TOKEN": "cli-test-token"}
        got = second.run("get", "svc", "kept", "-o", "json", env=env)
        assert json.loads(got.stdout)["metadata"]["name"] == "kept"
        # The stored digest wins over a different TRELLIS_TOKEN given to a restarted control plane.
        assert (
            second.run("delete", "svc", "kept", env={**env, "TRELLIS_TOKEN": "other"}).returncode
            == 1
        )
        assert second.run("delete", "svc", "kept", env=env).returncode == 0
    assert second.exit_code == 0
