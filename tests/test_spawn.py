"""trellis.spawn.Child: real child processes, their streams and exit codes, and starting
many of them from a uvloop process whose gRPC threads are busy (where fork-based
asyncio subprocesses crash a few children in a thousand: measured 8 in 2000)."""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import grpc
import pytest
import uvloop

from trellis.spawn import Child


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


RUNNERS: dict[str, Callable[[Coroutine[Any, Any, None]], None]] = {
    "asyncio": asyncio.run,
    "uvloop": uvloop.run,
}


@pytest.mark.parametrize("loop", sorted(RUNNERS))
def test_streams_carry_lines_both_ways_and_closing_ends_the_child(loop: str) -> None:
    async def talk() -> None:
        child = Child(["cat"], pipes=True)
        reader, writer = await child.streams()
        writer.write(b"hello\n")
        await writer.drain()
        assert await asyncio.wait_for(reader.readline(), 5) == b"hello\n"
        writer.close()  # cat reads the end of its input and exits
        await writer.wait_closed()
        assert await asyncio.wait_for(child.wait(), 5) == 0

    async def main() -> None:
        await talk()  # the loop's own descriptors, made once
        before = _open_fds()
        for _ in range(20):
            await talk()
        assert _open_fds() == before, "descriptors left open by children's streams"

    RUNNERS[loop](main())


async def test_exit_codes_and_signals() -> None:
    assert await Child(["sh", "-c", "exit 3"]).wait() == 3
    sleeper = Child(["sleep", "30"])
    assert sleeper.returncode is None
    os.kill(sleeper.pid, signal.SIGKILL)
    assert await asyncio.wait_for(sleeper.wait(), 5) == -signal.SIGKILL
    assert sleeper.returncode == -signal.SIGKILL
    assert await sleeper.wait() == -signal.SIGKILL  # waiting again on an ended child


async def test_without_pidfds_the_end_is_polled(monkeypatch: pytest.MonkeyPatch) -> None:
    # An old kernel or a seccomp profile refuses pidfd_open: waiting still works.
    def refused(pid: int, flags: int = 0) -> int:
        raise OSError(errno.ENOSYS, "pidfd_open")

    monkeypatch.setattr(os, "pidfd_open", refused)
    assert await asyncio.wait_for(Child(["sh", "-c", "sleep 0.1; exit 4"]).wait(), 5) == 4


async def test_inheritable_descriptors_reach_the_child_only_when_asked(tmp_path: Path) -> None:
    r, w = os.pipe()
    os.set_inheritable(w, True)
    try:
        probe = f"import os; os.write({w}, b'x')"
        assert await Child([sys.executable, "-c", probe], close_fds=False).wait() == 0
        assert os.read(r, 1) == b"x"
        assert await Child([sys.executable, "-c", probe]).wait() != 0  # closed: EBADF
    finally:
        os.close(r)
        os.close(w)


async def test_several_waiters_all_see_the_end() -> None:
    child = Child(["sleep", "0.2"])
    codes = await asyncio.wait_for(asyncio.gather(*(child.wait() for _ in range(3))), 5)
    assert codes == [0, 0, 0]


async def test_new_session_and_environment() -> None:
    child = Child(
        [sys.executable, "-c", "import os; print(os.getsid(0) == os.getpid(), os.environ['X'])"],
        env={"X": "42"},
        pipes=True,
        new_session=True,
    )
    reader, writer = await child.streams()
    writer.write_eof()  # the end of its input; what it writes still comes back
    assert await asyncio.wait_for(reader.read(), 10) == b"True 42\n"
    assert await child.wait() == 0
    writer.close()
    await writer.wait_closed()


def test_children_start_cleanly_while_grpc_is_busy() -> None:
    """The sidecar's situation: uvloop, gRPC's threads at work, children started."""

    async def main() -> list[int]:
        server = grpc.aio.server()
        echo = grpc.unary_unary_rpc_method_handler(lambda request, context: request)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("t.E", {"U": echo}),))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        done = asyncio.Event()

        async def load() -> None:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                call = channel.unary_unary("/t.E/U")
                while not done.is_set():
                    await call(b"x", timeout=5)

        callers = [asyncio.create_task(load()) for _ in range(8)]
        try:
            await asyncio.sleep(0.2)
            codes = [await asyncio.wait_for(Child(["/bin/true"]).wait(), 5) for _ in range(1000)]
        finally:
            done.set()
            await asyncio.gather(*callers)
            await server.stop(None)
        return codes

    codes = uvloop.run(main())
    assert [c for c in codes if c != 0] == []


def test_a_missing_program_is_an_os_error() -> None:
    with pytest.raises(FileNotFoundError):
        Child(["/nonexistent/binary"])
