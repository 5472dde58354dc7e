"""`trellis run`: a sidecar and an app, started and stopped in the order the mesh needs.

Start:
1. ask the control plane where its xDS server is (unless `--control` says);
2. create the Service when it does not exist (selector `app=SERVICE`);
3. start the sidecar in this process (free ports when the defaults are taken)
   and wait until it holds its config — the proxy is ready before the app;
4. start the app with the mesh environment (run/env.py);
5. once the app serves (its port accepts connections, or `--health-path`
   answers), register the Workload with a lease and keep heartbeating, with
   the app's health.

Stop, on SIGTERM/SIGINT:
1. deregister, so peers stop choosing this endpoint;
2. keep accepting while callers still send (their sidecars hear of the removal with
   the control plane's next push), until the inbound side is quiet for 0.5 s, up to
   `--drain-delay` (3 s);
3. drain: stop accepting, requests in flight finish, up to `--drain-timeout`;
4. stop the app (SIGTERM, SIGKILL after the grace period);
5. close the sidecar. The exit status is the app's.

When the app exits by itself (a job), the same happens from step 1 without
stopping the app, and the exit status is the app's.

`--proxyless` runs no sidecar: the app (a grpcio xDS app) is the endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sys
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trellis.proxy.app import ProxyApp
from trellis.proxy.identity.errors import IdentityError
from trellis.proxy.listeners.timeouts import DEFAULT_TIMEOUTS, DownstreamTimeouts
from trellis.proxy.options import Address, ProxyOptions
from trellis.run.api import ApiClient, ApiUnreachable
from trellis.run.app_process import AppProcess
from trellis.run.bootstrap import IdentityFiles, bootstrap_json
from trellis.run.env import app_environment
from trellis.run.health import HealthWatch, wait_serving
from trellis.run.registration import Registration

if TYPE_CHECKING:
    from trellis.proxy.identity.agent import IdentityAgent

log = logging.getLogger("trellis.run")

API_VERSION = "trellis.dev/v1alpha1"


class RunError(Exception):
    """Something `trellis run` cannot go on with; the message says what and why."""


@dataclass(frozen=True, slots=True)
class RunOptions:
    service: str
    command: Sequence[str]
    api: str
    token: str
    namespace: str = "default"
    port: int | None = None
    protocol: str = "http"
    labels: Mapping[str, str] = field(default_factory=dict)
    workload: str = ""
    service_account: str = ""
    control: tuple[str, ...] = ()  # xDS addresses; empty: ask the API
    address: str = "127.0.0.1"  # where peers reach this workload
    proxyless: bool = False
    health_path: str | None = None
    ttl: float = 10.0
    startup_timeout: float = 60.0
    drain_timeout: float = 10.0
    # After deregistering, keep accepting while callers still send, up to this long
    # (their sidecars learn of the removal from the control plane's next push).
    drain_delay: float = 3.0
    stop_grace: float = 10.0
    outbound_port: int = 15001
    inbound_port: int = 15006
    admin_port: int = 15000
    timeouts: DownstreamTimeouts = DEFAULT_TIMEOUTS  # the sidecar's, for its clients
    access_log: str = ""
    insecure: bool = False  # no mesh identity: plaintext xDS and plaintext traffic
    join_token: str = ""  # none: `trellis run` makes one with the admin token
    ca_file: str = ""  # none: the bundle comes from the API
    environment: Mapping[str, str] | None = None  # the app's base environment (default: ours)
    # The sidecar's metrics listener on `address` (None: none), the scrape token's digest
    # (empty: asked of the control plane) and the series cap.
    metrics_port: int | None = None
    metrics_token_sha256: str = ""
    metrics_max_series: int = 300
    # Where it runs (Workload spec.locality): callers prefer endpoints of their own zone.
    region: str = ""
    zone: str = ""
    sub_zone: str = ""

    @property
    def workload_name(self) -> str:
        return self.workload or f"{self.service}-{uuid.uuid4().hex[:6]}"

    @property
    def all_labels(self) -> dict[str, str]:
        return {"app": self.service, **self.labels}


class Runner:
    def __init__(self, options: RunOptions) -> None:
        self.options = options
        self.workload = options.workload_name
        self.proxy: ProxyApp | None = None
        self.registration: Registration | None = None
        self.health: HealthWatch | None = None
        self.app: AppProcess | None = None
        self.agent: IdentityAgent | None = None  # proxyless only: the app's SVID in files
        self.identity = False
        self._tmp = Path(tempfile.mkdtemp(prefix="trellis-run-"))
        self._api = ApiClient(options.api, options.token, timeout=10.0)

    # -- the whole life -------------------------------------------------------------------

    async def run(self) -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await self._start()
            assert self.app is not None
            app_exit = asyncio.ensure_future(self.app.wait())
            stopper = asyncio.ensure_future(stop.wait())
            serving = await self._register_when_serving(app_exit, stopper)
            if serving and self.health is not None:
                self.health.start()
            await asyncio.wait({app_exit, stopper}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if app_exit.done():
                log.info("app exited (%s): draining", app_exit.result())
                await self._stop(stop_app=False)
                return app_exit.result()
            log.info("stop requested: deregistering, draining, stopping the app")
            return await self._stop(stop_app=True)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            await self._cleanup()

    async def _start(self) -> None:
        opts = self.options
        info = await self._info()
        # Mesh identity unless told otherwise: a join token (ours, made with the admin
        # token, unless one is given), the CA bundle, and the secure port for everything.
        self.identity = not opts.insecure and bool(info.get("secure"))
        token, bundle = "", b""
        if self.identity:
            control = opts.control or (str(info["secure"]),)
            bundle = await self._bundle()
            token = opts.join_token or await self._join_token()
        else:
            control = opts.control or (str(info["xds"]),)
        await self._ensure_service()
        outbound: str | None = None
        ports = (opts.port,) if opts.port is not None else ()
        identity_files: IdentityFiles | None = None
        if opts.proxyless and self.identity:
            # No sidecar: this process keeps the app's SVID fresh in files grpcio watches.
            from trellis.proxy.identity.agent import IdentityAgent, write_files
            from trellis.proxy.identity.svid import Svid

            self.agent = IdentityAgent(control, bundle, token)
            directory = self._tmp / "identity"

            def rotate(svid: Svid) -> None:
                write_files(directory, svid)

            self.agent.on_rotate(rotate)  # the first SVID too: start() installs it
            try:
                await self.agent.start()
            except IdentityError as e:
                raise RunError(str(e)) from None
            identity_files = IdentityFiles.under(str(directory / "current"))
        metrics, digest = None, ""
        if not opts.proxyless and opts.metrics_port is not None:
            digest = opts.metrics_token_sha256 or await self._scrape_digest()
            metrics = Address(opts.address, opts.metrics_port)
        if not opts.proxyless:
            self.proxy = ProxyApp(
                ProxyOptions(
                    join_token=token,
                    ca_bundle=bundle,
                    control=control,
                    workload=self.workload,
                    namespace=opts.namespace,
                    service_account=opts.service_account,
                    labels=opts.all_labels,
                    app_ports=ports,
                    outbound=Address("127.0.0.1", opts.outbound_port),
                    inbound=Address(opts.address, opts.inbound_port),
                    admin=Address("127.0.0.1", opts.admin_port),
                    access_log=opts.access_log,
                    pick_free_ports=True,
                    timeouts=opts.timeouts,
                    metrics=metrics,
                    metrics_token_sha256=digest,
                    metrics_max_series=opts.metrics_max_series,
                )
            )
            try:
                await self.proxy.start()
            except IdentityError as e:
                raise RunError(str(e)) from None
            try:
                await self.proxy.wait_ready(opts.startup_timeout)
            except TimeoutError as e:
                raise RunError(
                    f"the sidecar got no config from {', '.join(control)}: {e}"
                ) from None
            outbound = str(self.proxy.addresses["outbound"])
            a = self.proxy.addresses
            # Always said (tools and tests read it): where this sidecar listens.
            print(
                f"trellis run: {self.workload} sidecar ready: outbound {a['outbound']}"
                f" inbound {a['inbound']} admin {a['admin']}"
                + (f" metrics {a['metrics']}" if "metrics" in a else ""),
                file=sys.stderr,
                flush=True,
            )
        bootstrap = self._tmp / "grpc-bootstrap.json"
        bootstrap.write_text(
            bootstrap_json(
                control_planes=list(control),
                workload=self.workload,
                namespace=opts.namespace,
                service_account=opts.service_account or None,
                labels=opts.all_labels,
                ports=list(ports),
                identity=identity_files,
            )
        )
        env = app_environment(
            opts.environment if opts.environment is not None else os.environ,
            outbound=outbound,
            bootstrap=str(bootstrap),
            service=opts.service,
            namespace=opts.namespace,
            workload=self.workload,
            port=opts.port,
        )
        self.app = AppProcess(opts.command, env)
        try:
            await self.app.start()
        except OSError as e:
            raise RunError(f"cannot start {opts.command[0]!r}: {e.strerror or e}") from None

    async def _register_when_serving(
        self, app_exit: asyncio.Future[int], stopper: asyncio.Future[Any]
    ) -> bool:
        opts = self.options
        serving = True
        if opts.port is not None:
            serving = await wait_serving(
                opts.port,
                opts.health_path,
                opts.startup_timeout,
                gone=lambda: app_exit.done() or stopper.done(),
            )
            if not serving:
                if not (app_exit.done() or stopper.done()):
                    log.warning(
                        "app not serving on port %s after %ss: registering it unhealthy",
                        opts.port,
                        opts.startup_timeout,
                    )
                else:
                    return False
        registration = Registration(opts.api, opts.token, self._workload_doc(), ttl=opts.ttl)
        registration.healthy = serving
        try:
            await asyncio.to_thread(registration.start)
        except (ApiUnreachable, RuntimeError) as e:
            raise RunError(f"cannot register workload {self.workload}: {e}") from None
        self.registration = registration
        if opts.port is not None:

            def changed(healthy: bool) -> None:
                registration.healthy = healthy
                log.warning("app is now %s", "healthy" if healthy else "unhealthy")

            self.health = HealthWatch(opts.port, opts.health_path, changed, healthy=serving)
        return True

    async def _stop(self, *, stop_app: bool) -> int:
        opts = self.options
        if self.health is not None:
            await self.health.aclose()
        if self.registration is not None:
            registration, self.registration = self.registration, None
            await asyncio.to_thread(registration.close, True)
        status = 0
        if self.proxy is not None and opts.drain_delay > 0:
            waited = await self.proxy.quiesce(opts.drain_delay)
            if waited > 0.1:
                log.info("served callers for %.1f s after deregistering", waited)
        if self.proxy is not None:
            log.info("draining %d request(s) in flight", self.proxy.in_flight())
            left = await self.proxy.drain(opts.drain_timeout)
            if left:
                log.warning("%d request(s) still in flight after the drain deadline", left)
        if stop_app and self.app is not None:
            log.info("stopping the app (pid %d)", self.app.pid)
            status = await self.app.stop(opts.stop_grace)
        return status

    async def _cleanup(self) -> None:
        if self.health is not None:
            await self.health.aclose()
        if self.registration is not None:
            await asyncio.to_thread(self.registration.close, True)
        if self.app is not None and self.app.proc is not None and not self.app.exited:
            await self.app.stop(self.options.stop_grace)
        if self.proxy is not None:
            await self.proxy.aclose()
        if self.agent is not None:
            await self.agent.aclose()
        shutil.rmtree(self._tmp, ignore_errors=True)

    # -- the control plane ----------------------------------------------------------------

    async def _info(self) -> dict[str, Any]:
        """Where the control plane's xDS (and secure) ports are."""
        try:
            response = await asyncio.to_thread(self._api.get, "/api/v1/info")
        except ApiUnreachable as e:
            raise RunError(f"cannot reach the control plane at {self.options.api}: {e}") from None
        if response.status_code != 200:
            raise RunError(f"control plane answered {response.status_code} to /api/v1/info")
        return dict(response.json())

    async def _bundle(self) -> bytes:
        """The CA bundle to pin: the file given, else the API's (which the admin token's
        channel to the control plane vouches for)."""
        if self.options.ca_file:
            try:
                return Path(self.options.ca_file).read_bytes()
            except OSError as e:
                raise RunError(f"cannot read --ca-file: {e}") from None
        response = await asyncio.to_thread(self._api.get, "/api/v1/ca/bundle")
        if response.status_code != 200:
            raise RunError(f"cannot get the CA bundle: HTTP {response.status_code}")
        return response.content

    async def _scrape_digest(self) -> str:
        """The SHA-256 of the mesh's scrape token, which the metrics listener requires."""
        response = await asyncio.to_thread(self._api.get, "/api/v1/metrics/scrape-token")
        if response.status_code != 200:
            raise RunError(
                f"cannot get the scrape token's digest for the metrics listener: HTTP"
                f" {response.status_code} {response.text} (or run with --no-metrics)"
            )
        return str(response.json()["sha256"])

    async def _join_token(self) -> str:
        """A short-lived join token for this workload's service account."""
        opts = self.options
        body = {
            "serviceAccount": opts.service_account or opts.all_labels["app"],
            "namespace": opts.namespace,
            "ttlSeconds": 600,
        }
        response = await asyncio.to_thread(self._api.post, "/api/v1/tokens", body)
        if response.status_code not in (200, 201):
            raise RunError(f"cannot make a join token: HTTP {response.status_code} {response.text}")
        return str(response.json()["token"])

    async def _ensure_service(self) -> None:
        opts = self.options
        if opts.port is None:
            return
        path = f"/api/v1/services/{opts.service}"
        params = {"namespace": opts.namespace}
        got = await asyncio.to_thread(self._api.get, path, params=params)
        if got.status_code == 200:
            return
        if got.status_code != 404:
            raise RunError(f"cannot read service {opts.service}: HTTP {got.status_code}")
        doc = {
            "apiVersion": API_VERSION,
            "kind": "Service",
            "metadata": {"name": opts.service, "namespace": opts.namespace},
            "spec": {
                "selector": {"app": opts.service},
                "ports": [
                    {
                        "name": opts.protocol,
                        "port": opts.port,
                        "targetPort": opts.protocol,
                        "protocol": opts.protocol,
                    }
                ],
            },
        }
        put = await asyncio.to_thread(self._api.put, path, doc, params=params)
        if put.status_code not in (200, 201, 409):
            raise RunError(f"cannot create service {opts.service}: {put.text}")
        log.info("created service %s/%s", opts.namespace, opts.service)

    def _workload_doc(self) -> dict[str, Any]:
        opts = self.options
        spec: dict[str, Any] = {"address": opts.address}
        if opts.service_account:
            spec["serviceAccount"] = opts.service_account
        if opts.port is not None:
            spec["ports"] = [{"name": opts.protocol, "port": opts.port, "protocol": opts.protocol}]
        if self.identity:
            spec["mtls"] = True  # callers with an identity use mTLS to us
        locality = {
            k: v
            for k, v in (("region", opts.region), ("zone", opts.zone), ("subZone", opts.sub_zone))
            if v
        }
        if locality:
            spec["locality"] = locality
        if opts.proxyless:
            spec["proxyless"] = True
        else:
            assert self.proxy is not None
            spec["inbound"] = {"port": self.proxy.addresses["inbound"].port}
            if "metrics" in self.proxy.addresses:
                spec["metrics"] = {"port": self.proxy.addresses["metrics"].port}
        return {
            "apiVersion": API_VERSION,
            "kind": "Workload",
            "metadata": {
                "name": self.workload,
                "namespace": opts.namespace,
                "labels": opts.all_labels,
            },
            "spec": spec,
        }


def run(options: RunOptions, log_level: str = "warning") -> int:
    import uvloop

    logging.basicConfig(
        level=log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s trellis run: %(message)s",
    )
    with contextlib.suppress(KeyboardInterrupt):
        return int(uvloop.run(Runner(options).run()))
    return 130
