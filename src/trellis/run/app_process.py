"""The app under `trellis run`: started in its own session, stopped by PID with a grace period.

The app gets its own session (process group), so a Ctrl-C in the terminal
reaches `trellis run` only, which then stops things in order (deregister,
drain, then the app). `stop` sends SIGTERM to the app's process group, then
SIGKILL after the grace period. The exit status follows the shell's rule:
the app's code, or 128 + the signal that killed it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping, Sequence

from trellis.spawn import Child


class AppProcess:
    def __init__(self, argv: Sequence[str], env: Mapping[str, str]) -> None:
        self.argv = list(argv)
        self.env = dict(env)
        self.proc: Child | None = None

    async def start(self) -> None:
        # Not asyncio's subprocesses: they fork, and this process runs gRPC (trellis.spawn).
        # Descriptors we inherited as inheritable go on to the app (socket activation,
        # `3<file`), as they did before.
        self.proc = Child(self.argv, env=self.env, new_session=True, close_fds=False)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def wait(self) -> int:
        assert self.proc is not None
        return exit_status(await self.proc.wait())

    @property
    def exited(self) -> bool:
        return self.proc is not None and self.proc.returncode is not None

    async def stop(self, grace: float) -> int:
        """SIGTERM the app's process group; SIGKILL after `grace` seconds. Its exit status."""
        proc = self.proc
        assert proc is not None
        if proc.returncode is None:
            self._signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), grace)
            except TimeoutError:
                self._signal(signal.SIGKILL)
                await proc.wait()
        return exit_status(await proc.wait())

    def _signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)


def exit_status(returncode: int) -> int:
    """Negative return codes (killed by a signal) become 128 + signal, as shells report them."""
    return 128 - returncode if returncode < 0 else returncode
