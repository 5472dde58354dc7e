"""A sidecar whose certificate expires while the control plane is away gets a new one when
the control plane comes back: it joins again with its join token (an expired certificate
is refused by the CA's TLS and by the secure xDS port, so renewing with it would fail for
ever). Before the fix the sidecar stayed disconnected, `renewals: 0`, new mTLS
connections failing with 503 UF."""

from __future__ import annotations

import time

import pytest

from tests.integration.dataplane import Sidecar, client_sidecar
from tests.integration.harness import Mesh, wait_for

pytestmark = pytest.mark.integration

SHORT_TTL = """
apiVersion: trellis.dev/v1alpha1
kind: MeshConfig
metadata: {name: mesh}
spec: {certificateTTL: 4s}
"""


def identity(sidecar: Sidecar) -> dict[str, object]:
    return dict(sidecar.admin_get("/stats").json()["identity"])


def test_a_sidecar_whose_certificate_expired_during_an_outage_joins_again(mesh: Mesh) -> None:
    mesh.cp.apply(SHORT_TTL)
    sidecar = client_sidecar(mesh)
    wait_for(lambda: int(identity(sidecar)["renewals"]) >= 1, 20, "a renewal at the short TTL")
    first = identity(sidecar)
    mesh.cp.stop()
    time.sleep(6)  # longer than the whole 4 s certificate: it has expired now
    assert int(identity(sidecar)["failures"]) >= 1  # it tried, and kept serving meanwhile
    mesh.cp.start()
    try:
        wait_for(
            lambda: (
                identity(sidecar)["serial"] != first["serial"]
                and bool(sidecar.config_dump()["connected"])
            ),
            30,
            "a new certificate and the xDS stream back after the outage",
        )
    except AssertionError:
        print(identity(sidecar), sidecar.config_dump().get("connected"))
        print("\n".join(sidecar.proc.stderr_lines[-30:]))
        raise
