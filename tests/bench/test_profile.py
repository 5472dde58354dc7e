"""bench.profile's reading of callgrind files and its grouping (the run itself needs
valgrind and minutes: `python -m bench.profile`, not a test)."""

from __future__ import annotations

from pathlib import Path

import pytest
from bench.profile import Grouper, _compiled_modules, charge, group_of_module, parse, render

REPO = Path(__file__).resolve().parents[2]
# mypyc names each module by its shortest unique suffix among these: routing___matchers___
MODULES = [
    "trellis.proxy.listeners.server",
    "trellis.routing.matchers",
    "trellis.authz.matchers",
    "trellis.proxy.stack.retry",
    "trellis.routing.retry",
]
LIB = "/src/1faad4a105600675a125__mypyc.cpython-311-x86_64-linux-gnu.so"

# The shape callgrind writes (name compression, relative positions, `calls=` followed by
# the call's inclusive cost): uvloop calls the listener's data_received (compiled), which
# calls a routing function and the interpreter; the interpreter calls libc.
PROFILE = f"""# callgrind format
version: 1
creator: callgrind-3.19.0
positions: line
events: Ir
summary: 1650

ob=(1) /venv/lib/python3.11/site-packages/uvloop/loop.cpython-311-x86_64-linux-gnu.so
fl=(1) uvloop/loop.c
fn=(1) __pyx_f_6uvloop_4loop_UVStream__on_read
10 100
cob=(2) {LIB}
cfl=(2) build/__native.c
cfn=(2) CPyPy_server___Connection___data_received
calls=1 0
+2 1500
fn=(3) __pyx_f_6uvloop_4loop_11SSLProtocol__do_read
0 50

ob=(2)
fl=(2)
fn=(2)
5 300
cfn=(4) CPyDef_routing___matchers___StringTest___test
calls=2 0
+1 400
cob=(3) /usr/lib/libpython3.11.so.1.0
cfi=(3) Objects/dictobject.c
cfn=(5) PyDict_GetItem
calls=3 0
+1 800
fn=(4)
0 400

ob=(3)
fl=(3)
fn=(5)
0 600
cob=(4) /usr/lib/x86_64-linux-gnu/libc.so.6
cfn=(6) memcpy
calls=1 0
0 200

ob=(4)
fl=(4) string/memcpy.c
fn=(6)
0 200
totals: 1650
"""


@pytest.fixture
def profile_path(tmp_path: Path) -> Path:
    path = tmp_path / "cg.1-01"
    path.write_text(PROFILE)
    return path


def test_modules_fall_into_the_group_of_their_package() -> None:
    assert group_of_module("trellis.proxy.http1.reader") == "codec"
    assert group_of_module("trellis.proxy.stack.exchange") == "stack"
    assert group_of_module("trellis.proxy.stack.core") == "stack"  # a new module
    assert group_of_module("trellis.proxy.stack.pool") == "pool"
    assert group_of_module("trellis.proxy.telemetry.tracer") == "tracing"
    assert group_of_module("trellis.proxy.telemetry.recorder") == "telemetry"


def test_the_build_s_modules_are_read_without_importing_it() -> None:
    modules = _compiled_modules(REPO / "src")
    assert "trellis.proxy.stack.exchange" in modules and "trellis.routing.table" in modules


def test_symbols_of_the_shared_library_are_grouped_by_module() -> None:
    grouper = Grouper(MODULES)
    assert grouper(LIB, "CPyPy_server___Connection___data_received") == "listeners"
    assert grouper(LIB, "CPyDef_routing___matchers___StringTest___test") == "routing"
    assert grouper(LIB, "CPyDef_authz___matchers___f") == "authz"
    assert grouper(LIB, "CPyDef_stack___retry___RetryState___next") == "stack"
    assert grouper(LIB, "routing___retry___RetryPolicy_dealloc") == "routing"
    assert grouper(LIB, "CPyDict_GetItem") == "mypyc runtime"
    ssl = "/venv/uvloop/loop.cpython-311-x86_64-linux-gnu.so"
    assert grouper(ssl, "__pyx_f_6uvloop_4loop_11SSLProtocol__do_read") == "TLS"
    assert grouper("/usr/lib/x86_64-linux-gnu/libcrypto.so.3", "EVP_EncryptUpdate") == "TLS"
    assert grouper("/usr/lib/libpython3.11.so.1.0", "_PyEval_EvalFrameDefault") == "interpreter"


def test_self_costs_partition_the_total_and_the_runtime_is_charged_to_its_callers(
    profile_path: Path,
) -> None:
    profile = parse(profile_path)
    assert profile.total == 1650
    assert sum(profile.self_cost.values()) == 1650
    grouper = Grouper(MODULES)
    self_cost, charged = charge(profile, grouper)
    assert self_cost == {
        "event loop": 100,
        "TLS": 50,
        "listeners": 300,
        "routing": 400,
        "interpreter": 600,
        "libc": 200,
    }
    # The interpreter and libc run only for the listener here: charged to it.
    assert charged == {"event loop": 100, "TLS": 50, "listeners": 1100, "routing": 400}
    assert sum(charged.values()) == pytest.approx(1650)


def test_the_table_names_every_group_and_the_yardstick(profile_path: Path) -> None:
    from bench.profile import Measured

    grouper = Grouper(MODULES)
    self_cost, charged = charge(parse(profile_path), grouper)
    sidecar = [Measured("sidecar A", self_cost, charged, 2000.0)]
    relay = [Measured("relay 1", {"event loop": 500.0}, {"event loop": 500.0}, 500.0)]
    text = render(sidecar, relay, False, 500, 3000)
    assert "| listeners | 300 | 1,100 | 1,100 | 55.0% | 0 |" in text
    assert "4.00x its yardstick" in text


def test_the_extra_requests_are_the_difference_of_two_runs(profile_path: Path) -> None:
    """Start-up cancels out: a run with twice the work, minus the first, is the work."""
    once = parse(profile_path)
    twice = parse(profile_path)
    for f in twice.self_cost:
        twice.self_cost[f] *= 2
    for arc in twice.calls:
        twice.calls[arc] *= 2
    twice.total *= 2
    extra = twice.minus(once)
    assert extra.total == once.total
    assert charge(extra, Grouper(MODULES)) == charge(once, Grouper(MODULES))
