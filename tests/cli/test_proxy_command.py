"""`trellis proxy`'s own argument parsing: clear errors, and a sidecar that never loads
typer or pydantic (cli/proxy.py says why)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from trellis.cli import proxy

TRELLIS = str(Path(sys.executable).with_name("trellis"))


def test_options_from_arguments() -> None:
    args = proxy.parser().parse_args(
        [
            "--control",
            "a:1",
            "--control",
            "b:2",
            "--workload",
            "w",
            "--label",
            "app=x",
            "--app-port",
            "8080",
            "--outbound",
            "127.0.0.1:0",
        ]
    )
    options = proxy.options_from(args)
    assert options.control == ("a:1", "b:2")
    assert options.labels == {"app": "x"}
    assert options.app_ports == (8080,)
    assert (options.outbound.host, options.outbound.port) == ("127.0.0.1", 0)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--outbound", "nope"], "error: --outbound: 'nope' is not HOST:PORT"),
        (["--label", "novalue"], "error: --label: 'novalue' is not KEY=VALUE"),
        (["--join-token", "t"], "error: --ca-file: --join-token needs --ca-file"),
        (["--app-port", "x"], "--app-port: invalid int value"),
    ],
)
def test_a_bad_option_is_named_and_exits_2(extra: list[str], message: str) -> None:
    argv = [TRELLIS, "proxy", "--control", "127.0.0.1:1", "--workload", "w", *extra]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert message in result.stderr


def test_a_missing_required_option_is_named() -> None:
    result = subprocess.run([TRELLIS, "proxy"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "--control" in result.stderr and "--workload" in result.stderr


def test_the_sidecar_command_loads_neither_typer_nor_pydantic() -> None:
    code = (
        "import sys\n"
        "from trellis.cli.main import main\n"
        "try:\n"
        "    main(['proxy', '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sorted(m for m in ('typer', 'pydantic', 'rich') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "usage: trellis proxy" in result.stdout
    assert result.stdout.strip().endswith("[]")


def test_trellis_help_lists_the_proxy_command() -> None:
    result = subprocess.run([TRELLIS, "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert "proxy" in result.stdout and "Run a sidecar proxy" in result.stdout
