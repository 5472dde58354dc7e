"""`trellis proxy` and `trellis run` parse their own arguments: clear errors, and sidecars
that never load typer or pydantic (cli/proxy.py says why)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from trellis.cli import proxy, run

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


@pytest.mark.parametrize("command", ["proxy", "run"])
def test_the_sidecar_commands_load_neither_typer_nor_pydantic(command: str) -> None:
    code = (
        "import sys\n"
        "from trellis.cli.main import main\n"
        "try:\n"
        f"    main([{command!r}, '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sorted(m for m in ('typer', 'pydantic', 'rich') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert f"usage: trellis {command}" in result.stdout
    assert result.stdout.strip().endswith("[]")


def test_trellis_help_lists_the_sidecar_commands() -> None:
    result = subprocess.run([TRELLIS, "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert "Run a sidecar proxy" in result.stdout
    assert "Run CMD beside a sidecar" in result.stdout


def test_run_takes_the_app_after_the_double_dash() -> None:
    args, command, labels = run.parse(
        [
            "--service",
            "web",
            "--port",
            "8000",
            "--label",
            "version=v2",
            "--",
            "python",
            "-m",
            "app",
            "--port",
            "9",
        ]
    )
    assert (args.service, args.port, args.protocol) == ("web", 8000, "http")
    assert command == ["python", "-m", "app", "--port", "9"]
    assert labels == {"version": "v2"}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--service", "web"], "error: give the app to run after --"),
        (["--port", "1", "--", "true"], "the following arguments are required: --service"),
        (["--service", "w", "--label", "x", "--", "true"], "error: --label: 'x' is not KEY=VALUE"),
        (["--service", "w", "--protocol", "ftp", "--", "true"], "--protocol: invalid choice"),
    ],
)
def test_run_usage_errors_exit_2(argv: list[str], message: str) -> None:
    result = subprocess.run([TRELLIS, "run", *argv], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert message in result.stderr


def test_the_run_sidecar_loads_no_heavy_client_library() -> None:
    # What `trellis run` imports to live beside its app: no httpx (and with it rich and
    # pygments, ~11 MB), no typer, no pydantic (run/api.py).
    code = (
        "import sys\n"
        "import trellis.cli.run, trellis.run.runner\n"
        "print(sorted(m for m in ('typer', 'pydantic', 'rich', 'httpx') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
