"""IdentityAgent: gets the workload's SVID from the control plane's CA and keeps it fresh.

Start: make a P-256 key, send a CSR with the join token to
`trellis.ca.v1.Certificates/Sign` on the control plane's secure port (TLS from
the first byte, the CA bundle pinned — it came with the bootstrap, never from
the network unauthenticated). Then renew at half life with a new key, proving
who we are with the current certificate (no token). Every new SVID is given
to the observers (`on_rotate`): the proxy builds new TLS contexts for new
connections; open connections keep the certificate they were made with, so a
rotation drops nothing.

Failure: the first issuance failing is fatal (IdentityError, with the CA's
reason); a failed renewal is retried with backoff, logged and counted, and the
proxy keeps serving with what it has. Once the certificate has expired (the
control plane was away for more than half its life), the retries join again with
the join token, as at the start: an expired certificate is refused by the CA's
TLS, so without the token the sidecar would stay locked out for good.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import random
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import grpc

from trellis.proxy.identity.errors import IdentityError
from trellis.proxy.identity.svid import Svid
from trellis.spawn import Child

log = logging.getLogger("trellis.proxy.identity")

SIGN = "/trellis.ca.v1.Certificates/Sign"
# The control plane's serving certificate always names this host (and its IPs).
CONTROL_PLANE_NAME = "trellis-control"
RETRY_MIN, RETRY_MAX = 1.0, 30.0
KEY_WORKER_TIMEOUT = 30.0  # per question to the key worker
CA_CALL_TIMEOUT = 10.0  # per control-plane address tried


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def channel_options() -> list[tuple[str, Any]]:
    return [("grpc.ssl_target_name_override", CONTROL_PLANE_NAME)]


class KeyWorker:
    """The key, the CSR and reading the certificate, done by a child process
    (`python -m trellis.proxy.identity.keygen`): the sidecar never loads `cryptography`
    (~18 MB of RSS). One child per issuance; the key comes back over its socket only.
    The child is started without fork() (trellis.spawn): this process runs gRPC."""

    def __init__(self) -> None:
        self._child: Child | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> KeyWorker:
        child = self._child = Child(
            [sys.executable, "-m", "trellis.proxy.identity.keygen"], pipes=True
        )
        try:
            self._reader, self._writer = await child.streams()
        except BaseException:
            child.popen.kill()  # not left running, nor unreaped
            await child.wait()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        child, writer = self._child, self._writer
        if writer is not None:
            writer.close()  # its stdin ends: the worker exits
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        if child is not None and child.returncode is None:
            try:
                await asyncio.wait_for(child.wait(), 5)
            except TimeoutError:
                child.popen.kill()
                await child.wait()

    async def _ask(self, request: dict[str, str]) -> dict[str, Any]:
        reader, writer = self._reader, self._writer
        assert reader is not None and writer is not None
        writer.write((json.dumps(request) + "\n").encode())
        try:
            await asyncio.wait_for(writer.drain(), KEY_WORKER_TIMEOUT)
            line = await asyncio.wait_for(reader.readline(), KEY_WORKER_TIMEOUT)
        except TimeoutError:
            raise IdentityError(
                f"the key worker gave no answer within {KEY_WORKER_TIMEOUT:.0f} s"
            ) from None
        if not line:
            raise IdentityError("the key worker ended without an answer")
        return dict(json.loads(line))

    async def new(self) -> tuple[bytes, str]:
        """(key PEM, CSR PEM) for a new P-256 key."""
        answer = await self._ask({"op": "new"})
        return str(answer["key"]).encode(), str(answer["csr"])

    async def parse(self, chain: bytes, key: bytes, bundle: bytes) -> Svid:
        answer = await self._ask(
            {"op": "parse", "chain": chain.decode(), "key": key.decode(), "bundle": bundle.decode()}
        )
        if "error" in answer:
            raise ValueError(str(answer["error"]))
        return Svid(
            chain_pem=chain,
            key_pem=key,
            bundle_pem=bundle,
            spiffe_id=str(answer["spiffe_id"]),
            serial=int(answer["serial"]),
            not_before=dt.datetime.fromisoformat(str(answer["not_before"])),
            not_after=dt.datetime.fromisoformat(str(answer["not_after"])),
        )


class IdentityAgent:
    def __init__(self, servers: Sequence[str], bundle_pem: bytes, join_token: str) -> None:
        if not servers:
            raise ValueError("the CA needs a control-plane address")
        self.servers = list(servers)
        self.bundle_pem = bundle_pem
        self.join_token = join_token
        self.svid: Svid | None = None
        self.renew_at = _now()
        self.renewals = 0
        self.failures = 0
        self.last_error = ""
        self._observers: list[Callable[[Svid], None]] = []
        self._task: asyncio.Task[None] | None = None

    def on_rotate(self, observer: Callable[[Svid], None]) -> None:
        self._observers.append(observer)

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> Svid:
        """The first SVID (IdentityError if refused), then renewals in the background."""
        try:
            svid = await self._sign(token=self.join_token, current=None)
        except grpc.aio.AioRpcError as e:
            raise IdentityError(
                f"the CA refused a certificate: {e.code().name}: {e.details()}"
            ) from None
        self._install(svid)
        self._task = asyncio.get_running_loop().create_task(self._renewals())
        return svid

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    # -- CA calls -------------------------------------------------------------------------

    def credentials(self, svid: Svid | None = None) -> grpc.ChannelCredentials:
        """mTLS to the control plane: the pinned bundle, and our SVID when we have one."""
        svid = svid or self.svid
        if svid is None:
            return grpc.ssl_channel_credentials(root_certificates=self.bundle_pem)
        return grpc.ssl_channel_credentials(
            root_certificates=self.bundle_pem,
            private_key=svid.key_pem,
            certificate_chain=svid.chain_pem,
        )

    async def _sign(self, *, token: str | None, current: Svid | None) -> Svid:
        async with KeyWorker() as worker:
            key, csr = await worker.new()
            body: dict[str, str] = {"csr": csr}
            if token:
                body["token"] = token
            last: grpc.aio.AioRpcError | None = None
            # With a token, no client certificate at all (not the expired one we hold).
            credentials = (
                self.credentials(current)
                if current is not None
                else grpc.ssl_channel_credentials(root_certificates=self.bundle_pem)
            )
            for server in self.servers:  # in order of preference, as for xDS
                async with grpc.aio.secure_channel(
                    server, credentials, options=channel_options()
                ) as channel:
                    call = channel.unary_unary(SIGN)
                    try:
                        raw = await call(json.dumps(body).encode(), timeout=CA_CALL_TIMEOUT)
                    except grpc.aio.AioRpcError as e:
                        code = e.code()
                        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                            last = e
                            continue
                        raise
                answer = json.loads(raw)
                bundle = answer.get("bundle", "").encode() or self.bundle_pem
                try:
                    return await worker.parse(answer["certificate"].encode(), key, bundle)
                except (KeyError, ValueError) as e:
                    raise IdentityError(
                        f"the CA answered something that is not an SVID: {e}"
                    ) from None
            assert last is not None
            raise last

    def _install(self, svid: Svid) -> None:
        self.svid = svid
        self.bundle_pem = svid.bundle_pem
        # Half of the life it has from now on: the CA backdates not-before (clock skew),
        # so the midpoint of the certificate's whole validity would come too early.
        received = _now()
        self.renew_at = received + (svid.not_after - received) / 2
        log.info(
            "identity %s serial %x valid until %s", svid.spiffe_id, svid.serial, svid.not_after
        )
        for observer in self._observers:
            observer(svid)

    async def _renewals(self) -> None:
        delay = RETRY_MIN
        while True:
            svid = self.svid
            assert svid is not None
            wait = (self.renew_at - _now()).total_seconds()
            if wait > 0:
                await asyncio.sleep(wait)
            # An attempt (key worker and every CA address) is bounded as a whole: a hung
            # one counts as failed and is retried, never left to let the certificate expire.
            bound = 2 * KEY_WORKER_TIMEOUT + CA_CALL_TIMEOUT * len(self.servers) + 10
            # A certificate that expired (the control plane was away for longer than half
            # its life) proves nothing any more: the CA's TLS refuses it, and so would the
            # xDS port. Join again with the join token, as at the start (the CA still checks
            # that the token is valid and not revoked); a live certificate renews itself.
            expired = svid.seconds_left(_now()) <= 0
            try:
                sign = (
                    self._sign(token=self.join_token, current=None)
                    if expired
                    else self._sign(token=None, current=svid)
                )
                fresh = await asyncio.wait_for(sign, bound)
            except (grpc.aio.AioRpcError, IdentityError, OSError) as e:
                self.failures += 1
                if isinstance(e, grpc.aio.AioRpcError):
                    self.last_error = str(e.details())
                elif isinstance(e, TimeoutError):
                    self.last_error = f"the renewal attempt took more than {bound:.0f} s"
                else:
                    self.last_error = str(e)
                left = svid.seconds_left(_now())
                log.warning("renewal failed (%.0f s of validity left): %s", left, self.last_error)
                await asyncio.sleep(min(delay, max(left / 4, RETRY_MIN)) * random.uniform(0.5, 1))
                delay = min(delay * 2, RETRY_MAX)
                continue
            delay = RETRY_MIN
            self.renewals += 1
            self._install(fresh)

    def statistics(self) -> dict[str, Any]:
        svid = self.svid
        return {
            "spiffe_id": svid.spiffe_id if svid else None,
            "serial": f"{svid.serial:x}" if svid else None,
            "not_after": svid.not_after.isoformat() if svid else None,
            "renew_at": self.renew_at.isoformat() if svid else None,
            "renewals": self.renewals,
            "failures": self.failures,
            "last_error": self.last_error or None,
        }


def write_files(directory: Path, svid: Svid) -> Path:
    """Write `svid` for grpcio's file_watcher provider: `DIR/current/{cert,key,bundle}.pem`,
    swapped atomically by renaming a symlink, so a reader never sees a key that does not
    match its certificate. The previous generation stays (a reader may still hold its
    paths); older ones are removed. Returns the `current` path."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    current = directory / "current"
    previous = os.readlink(current) if current.is_symlink() else None
    generation = directory / f"gen-{svid.serial:x}"
    generation.mkdir(mode=0o700, exist_ok=True)
    for name, data in (
        ("cert.pem", svid.chain_pem),
        ("key.pem", svid.key_pem),
        ("bundle.pem", svid.bundle_pem),
    ):
        fd = os.open(generation / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    tmp = directory / f".current-{svid.serial:x}"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    tmp.symlink_to(generation.name)
    os.replace(tmp, current)
    for old in directory.glob("gen-*"):
        if old.name not in (generation.name, previous):
            shutil.rmtree(old, ignore_errors=True)
    return current
