"""Child processes of processes that run gRPC: started with vfork + exec, awaited through a pidfd.

gRPC registers fork handlers (pthread_atfork). asyncio under uvloop starts children
with libuv, which calls fork(); when one of gRPC's threads is busy at that moment,
gRPC skips its handlers ("Other threads are currently calling into gRPC, skipping
fork() handlers") and the child can abort before it execs
(`ev_epoll1_linux.cc Check failed: next_worker->state == KICKED`). Seen here: a
sidecar's certificate renewal, which starts a key worker, then waited forever and
the certificate expired.

`subprocess.Popen` uses vfork() on Linux (Python 3.10 and later, when no preexec_fn
and no change of user or group is asked for): no fork handler runs, and the child
execs before doing anything else. Its end is awaited through a pidfd (Linux 5.3 and
later) that the event loop watches, so no child watcher or SIGCHLD handler is needed
and no other process's status is reaped.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Mapping, Sequence


class Child:
    """One child process. `pipes=True` gives it a stdin and a stdout pipe (see `streams`)."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        pipes: bool = False,
        new_session: bool = False,
    ) -> None:
        pipe = subprocess.PIPE if pipes else None
        self.popen = subprocess.Popen(
            list(argv),
            env=dict(env) if env is not None else None,
            stdin=pipe,
            stdout=pipe,
            start_new_session=new_session,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        """Its exit code once it has ended (negative: the signal that killed it), else None."""
        return self.popen.poll()

    async def wait(self) -> int:
        """Wait for it to end, without blocking the event loop; its return code."""
        code = self.popen.poll()
        if code is not None:
            return code
        # Not reaped by anyone but us, so the PID cannot have been reused.
        fd = os.pidfd_open(self.popen.pid)
        loop = asyncio.get_running_loop()
        ended: asyncio.Future[None] = loop.create_future()

        def readable() -> None:
            if not ended.done():
                ended.set_result(None)

        try:
            loop.add_reader(fd, readable)
            try:
                await ended
            finally:
                loop.remove_reader(fd)
        finally:
            os.close(fd)
        return self.popen.wait()

    async def streams(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """The child's stdout and stdin as asyncio streams (the child must have `pipes`)."""
        stdin, stdout = self.popen.stdin, self.popen.stdout
        assert stdin is not None and stdout is not None, "the child was started without pipes"
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), stdout)
        transport, protocol = await loop.connect_write_pipe(
            lambda: asyncio.StreamReaderProtocol(asyncio.StreamReader()), stdin
        )
        return reader, asyncio.StreamWriter(transport, protocol, None, loop)
