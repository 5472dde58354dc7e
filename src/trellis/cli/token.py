"""`trellis token create|list|revoke`: join tokens, each scoped to one service account.

A workload's proxy gets its first certificate from the CA with a join token
(`trellis run --join-token` / `TRELLIS_JOIN_TOKEN`); later renewals prove
themselves with the current certificate. Revoking a token stops the renewal of
every certificate it issued. The token is printed once, alone on stdout (so
`TOKEN=$(trellis token create --service reviews)` works); only its digest is kept.
"""

from __future__ import annotations

import re
from typing import Annotated

import typer

from trellis.cli import output
from trellis.cli.client import ApiError, CliError, connect, reporting
from trellis.cli.options import Server

app = typer.Typer(
    help="Join tokens: a workload's first certificate needs one.", no_args_is_help=True
)

_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_ttl(text: str) -> float:
    """Seconds in `7d`, `24h`, `1h30m`, `90s` or a plain number of seconds."""
    if text.isdigit():
        seconds = int(text)
    else:
        match = _DURATION.match(text)
        if not text or match is None:
            raise typer.BadParameter(f"{text!r} is not a duration such as 24h, 30m, 7d, 1h30m")
        days, hours, minutes, secs = (int(g or 0) for g in match.groups())
        seconds = ((days * 24 + hours) * 60 + minutes) * 60 + secs
    if seconds <= 0:
        raise typer.BadParameter("the TTL must be positive")
    return float(seconds)


@app.callback()
def _group() -> None:
    """Join tokens: a workload's first certificate needs one."""


@app.command("create")
def create(
    service: Annotated[
        str, typer.Option("--service", help="the service account the token may obtain")
    ],
    namespace: Annotated[str, typer.Option("--namespace", "-n")] = "default",
    ttl: Annotated[
        str, typer.Option("--ttl", help="how long the token may be used to join (24h, 7d, 30m)")
    ] = "24h",
    server: Server = None,
) -> None:
    """Create a join token for one service account; prints the token (shown only once)."""
    with reporting():
        seconds = parse_ttl(ttl)
        body = connect(server).request(
            "POST",
            "/api/v1/tokens",
            json={"serviceAccount": service, "namespace": namespace, "ttlSeconds": seconds},
        )
        typer.echo(body["token"])
        typer.echo(
            f"join token {body['id']} for service account {namespace}/{service}, valid for "
            f"joining until {body['expires']}; it is shown only once",
            err=True,
        )


def _status(token: dict[str, object]) -> str:
    if token.get("revoked"):
        return "revoked"
    return "expired" if token.get("expired") else "valid"


@app.command("list")
def list_tokens(
    json_out: Annotated[bool, typer.Option("--json", help="print the API's JSON answer")] = False,
    server: Server = None,
) -> None:
    """List join tokens: scope, expiry, revoked or not, certificates still valid."""
    with reporting():
        body = connect(server).request("GET", "/api/v1/tokens")
        if json_out:
            typer.echo(output.to_json(body))
            return
        items = body["items"]
        if not items:
            typer.echo("No join tokens.", err=True)
            return
        table = output.plain_table(
            ["ID", "NAMESPACE", "SERVICE ACCOUNT", "EXPIRES", "STATUS", "CERTIFICATES"]
        )
        for t in items:
            table.add_row(
                t["id"],
                t["namespace"],
                t["serviceAccount"],
                t["expires"],
                _status(t),
                str(t["certificates"]),
            )
        output.console().print(table)


@app.command("revoke")
def revoke(
    token_id: Annotated[
        str, typer.Argument(metavar="ID", help="the token's ID (trellis token list)")
    ],
    server: Server = None,
) -> None:
    """Revoke a join token: it can no longer join, and its certificates no longer renew."""
    with reporting():
        try:
            body = connect(server).request("DELETE", f"/api/v1/tokens/{token_id}")
        except ApiError as e:
            if e.status == 404:
                raise CliError(
                    f"join token {token_id} not found (see `trellis token list`)"
                ) from None
            raise
        typer.echo(
            f"join token {body['id']} revoked: its {body['certificates']} certificate(s) will "
            "not renew"
        )
