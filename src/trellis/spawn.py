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
and no other process's status is reaped; where pidfds are refused (an old kernel, a
seccomp profile) it is polled.

A child that talks with us gets one end of a socket pair as its stdin and stdout
(`pipes=True`), and we get asyncio streams over the other end. Not pipes: uvloop
closes a pipe's descriptor and then the file object that held it, a second close of
the same number, which in a process whose gRPC threads open sockets at any moment
could close one of theirs. A socket handed to the loop is closed once.

Signal dispositions the parent ignores stay ignored in the child (as across any
exec); libuv used to reset them all.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
from collections.abc import Mapping, Sequence

_POLL_MAX = 0.1  # seconds between polls where pidfds are refused


class Child:
    """One child process. `pipes=True` connects its stdin and stdout to us (`streams`).
    `close_fds=False` lets it inherit our inheritable descriptors (an app under
    `trellis run` may be given sockets or files by whoever started us)."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        pipes: bool = False,
        new_session: bool = False,
        close_fds: bool = True,
    ) -> None:
        self._sock: socket.socket | None = None
        theirs: socket.socket | None = None
        if pipes:
            self._sock, theirs = socket.socketpair()
        fd = theirs.fileno() if theirs is not None else None
        try:
            self.popen = subprocess.Popen(
                list(argv),
                env=dict(env) if env is not None else None,
                stdin=fd,
                stdout=fd,
                start_new_session=new_session,
                close_fds=close_fds,
            )
        except BaseException:
            if self._sock is not None:
                self._sock.close()
            raise
        finally:
            if theirs is not None:
                theirs.close()  # the child has its copy

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
        try:
            fd = os.pidfd_open(self.popen.pid)
        except OSError:  # no pidfds here (old kernel, seccomp): poll
            delay = 0.005
            while (code := self.popen.poll()) is None:
                await asyncio.sleep(delay)
                delay = min(delay * 2, _POLL_MAX)
            return code
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
        """What the child writes to its stdout, and what it reads from its stdin, as
        asyncio streams (once; the child must have `pipes`). `write_eof()` ends its
        input and keeps its output coming; closing the writer closes both."""
        sock, self._sock = self._sock, None
        assert sock is not None, "the child was started without pipes, or streams were taken"
        return await asyncio.open_unix_connection(sock=sock)
