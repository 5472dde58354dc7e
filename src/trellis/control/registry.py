"""Registry: workloads that register themselves with a TTL lease and heartbeat it.

It owns the lease life cycle: register (the Workload and its lease in one
apply), heartbeat (renew, and report health), deregister, and a sweeper that
deletes every Workload whose lease has expired. Leases live in the store, so a
restarted control plane still knows its endpoints; on start it renews every
lease by its own ttl, giving each workload one ttl to heartbeat again before
it is swept. Workloads applied without a lease (static endpoints) never expire.

Expiry is decided here (by `clock`), not by the store: the store only records
`expires_at`. A heartbeat that arrives between the sweeper's read and its
delete of an already expired lease is lost; the client's next heartbeat gets
`UnknownWorkload` and it registers again.

What it must not know: how leases are stored, what the control plane does
with workloads (endpoints, health in EDS), the REST or gRPC surface in front.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from trellis.model.keys import ResourceKey
from trellis.model.workload import Workload
from trellis.store.base import ApplyResult, Delete, Lease, MissingWorkload, Put, PutLease, Store

log = logging.getLogger(__name__)

_START_ATTEMPTS = 3  # renewing on start races with deletions by another control plane


class UnknownWorkload(Exception):
    """No lease for this workload (never registered, expired, or deregistered): register again."""


@dataclass(frozen=True, slots=True)
class RegistryStatistics:
    registered: int  # register calls that succeeded
    heartbeats: int  # heartbeats that renewed a lease
    expired: int  # workloads the sweeper deleted
    sweep_errors: int  # sweeps that failed (logged; the sweeper keeps going)


class Registry:
    """Use as `async with Registry(store) as registry:`; the sweeper runs inside."""

    def __init__(
        self,
        store: Store,
        *,
        sweep_interval: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._sweep_interval = sweep_interval
        self._clock = clock
        self._sweeper: asyncio.Task[None] | None = None
        self._registered = 0
        self._heartbeats = 0
        self._expired = 0
        self._sweep_errors = 0

    async def __aenter__(self) -> Registry:
        await self._renew_all()
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="registry-sweeper")
        return self

    async def __aexit__(self, *exc: object) -> None:
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is None:
            return
        sweeper.cancel()
        try:
            await sweeper
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # we are being cancelled ourselves, not just our sweeper

    async def register(self, workload: Workload, ttl: float) -> ApplyResult:
        """Store `workload` and (re)create its lease, healthy, expiring `ttl` seconds from now."""
        key = ResourceKey(workload.kind, workload.namespace, workload.name)
        result = await self._store.apply([Put(workload), PutLease(key, ttl)])
        self._registered += 1
        return result

    async def heartbeat(self, key: ResourceKey, healthy: bool = True) -> Lease:
        """Renew the lease of `key` by its ttl and record `healthy`.

        Raises `UnknownWorkload` when it has no lease: the client must register again.
        """
        lease = await self._store.get_lease(key)
        if lease is None:
            raise UnknownWorkload(f"{key} is not registered")
        try:
            await self._store.apply([PutLease(key, lease.ttl, healthy)])
        except MissingWorkload:
            raise UnknownWorkload(f"{key} is not registered") from None
        renewed = await self._store.get_lease(key)
        if renewed is None:
            raise UnknownWorkload(f"{key} is not registered")
        self._heartbeats += 1
        return renewed

    async def deregister(self, key: ResourceKey) -> ApplyResult:
        """Delete the workload and its lease ("absent" if it was not there)."""
        return await self._store.apply([Delete(key)])

    async def sweep_once(self) -> list[ResourceKey]:
        """Delete every workload whose lease has expired, in one apply; return their keys."""
        now = self._clock()
        expired = [
            lease.key for lease in await self._store.list_leases() if lease.expires_at <= now
        ]
        if not expired:
            return []
        await self._store.apply([Delete(key) for key in expired])
        self._expired += len(expired)
        for key in expired:
            log.info("lease of %s expired: deregistered", key)
        return expired

    def statistics(self) -> RegistryStatistics:
        return RegistryStatistics(
            self._registered, self._heartbeats, self._expired, self._sweep_errors
        )

    async def _renew_all(self) -> None:
        """Give every stored lease one more ttl (a restarted control plane's grace)."""
        for attempt in range(1, _START_ATTEMPTS + 1):
            leases = await self._store.list_leases()
            if not leases:
                return
            try:
                await self._store.apply(
                    [PutLease(lease.key, lease.ttl, lease.healthy) for lease in leases]
                )
            except MissingWorkload:
                if attempt == _START_ATTEMPTS:
                    raise
                continue
            log.info("renewed %d leases on start", len(leases))
            return

    async def _sweep_forever(self) -> None:
        while True:
            try:
                await self.sweep_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                self._sweep_errors += 1
                log.exception("lease sweep failed; retrying in %.1f s", self._sweep_interval)
            await asyncio.sleep(self._sweep_interval)
