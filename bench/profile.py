"""Where a request's instructions go in the sidecar pair, against the minimal relay yardstick.

`python -m bench.profile [--mtls] [--requests N1 N2] [--src DIR] [--keep DIR [--reuse]]
[--update-docs]`

Each sidecar of the pair (as `python -m bench.instructions` runs it), then each relay of
a `bench.minimal_relay` pair (the yardstick: uvloop + httptools, nothing else), runs
under callgrind while N1, then N2 sequential keep-alive GETs go through; the
difference of the two profiles over N2 - N1 requests is one request's cost, start-up
and shutdown cancelled out (the event loop's thread only, as bench.instructions).
Deterministic: the same build gives the same table within a few tenths of a percent.

Functions are grouped by where their code lives, never by their names:
- compiled Trellis code (mypyc puts every module into one shared library) by module:
  mypyc prefixes each C function with its module's shortest unique suffix, which
  `mypyc.namegen` computes from `trellis.compiled.MODULES`, so a new module (the
  request path's new layers) is grouped by its path with no change here (`GROUPS`);
- other code by the object it lives in: uvloop (event loop; its SSLProtocol is TLS),
  libssl/libcrypto/_ssl (TLS), httptools (codec), libpython (the interpreter, and with
  it the Trellis modules that run interpreted), libc.

Two figures per group: **self**, the instructions executed in the group's own code (a
partition of the total); and **charged**, self plus the share of the runtime it calls
(the interpreter, the mypyc runtime helpers, libc, other native modules) charged to it
gprof-style: each runtime function's cost is split among its callers in proportion to
the number of calls, recursively, until a group that owns code is reached (so the
interpreted part of the relay yardstick is charged to uvloop's and httptools'
callbacks: event loop and codec). Charged figures also sum to the
total; they answer "what does routing cost, dict lookups included". Instructions are
not time (a cache miss costs more than an add), but the shares track CPU.

`--update-docs` writes the table into docs/benchmarks.md (section `profile`, or
`profile-mtls`) with the command that produced it. `--keep DIR` keeps the profiles
(for `callgrind_annotate`); `--reuse` reads them again instead of running (a new
grouping on the same profiles). Needs valgrind and HAProxy (`make bench` installs them).
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import sys
import tempfile
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from bench import haproxy, sidecars
from bench.certs import write_tls_files
from bench.dataplane import _wait_listening
from bench.instructions import REPO, STOP_GRACE, _send
from bench.procs import Child, free_port
from bench.report import Section, update_docs

# Trellis modules -> group, the longest matching prefix wins. New modules fall into the
# group of their package (a new `trellis.proxy.stack.core` is "stack").
GROUPS: tuple[tuple[str, str], ...] = (
    ("trellis.proxy.http1", "codec"),
    ("trellis.routing", "routing"),
    ("trellis.authz", "authz"),
    ("trellis.proxy.stack", "stack"),
    ("trellis.proxy.stack.pool", "pool"),
    ("trellis.proxy.stack.hosts", "pool"),
    ("trellis.proxy.stack.balance", "pool"),
    ("trellis.proxy.stack.cluster", "pool"),
    ("trellis.proxy.stack.outlier", "pool"),
    ("trellis.proxy.stack.locality", "pool"),
    ("trellis.proxy.listeners", "listeners"),
    ("trellis.proxy.telemetry", "telemetry"),
    ("trellis.proxy.telemetry.tracer", "tracing"),
    ("trellis.proxy.telemetry.tracecontext", "tracing"),
    ("trellis.proxy.telemetry.otlpwire", "tracing"),
    ("trellis.proxy.config", "config"),
    ("trellis", "other Trellis"),
)
# Code that only runs on behalf of its callers: its cost is charged to them. ("other":
# native modules such as _random or protobuf's upb, called from Trellis code.)
RUNTIME = ("interpreter", "mypyc runtime", "libc", "other")
# Rows in this order; the yardstick's groups are the same words.
ORDER = (
    "codec",
    "routing",
    "authz",
    "stack",
    "pool",
    "listeners",
    "telemetry",
    "tracing",
    "config",
    "other Trellis",
    "event loop",
    "TLS",
    "interpreter",
    "mypyc runtime",
    "libc",
    "other",
)
_CPY_PREFIX = re.compile(r"^CPy[A-Za-z]*_")
_SSL_NAMES = re.compile(r"SSLProtocol|sslproto|_ssl_|SSLObject", re.IGNORECASE)


def group_of_module(module: str) -> str:
    best, found = -1, "other Trellis"
    for prefix, group in GROUPS:
        if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
            best, found = len(prefix), group
    return found


class Grouper:
    """Which group a function of a callgrind profile belongs to (object file + symbol)."""

    def __init__(self, modules: Iterable[str]) -> None:
        from mypyc.namegen import make_module_translation_map

        shortnames = make_module_translation_map(list(modules))
        # C symbol prefix ("stack___retry___") -> group, longest first.
        self.prefixes = sorted(
            ((short.rstrip(".").replace(".", "___") + "___", group_of_module(m))
             for m, short in shortnames.items()),
            key=lambda p: -len(p[0]),
        )  # fmt: skip
        self.cache: dict[tuple[str, str], str] = {}

    def __call__(self, obj: str, fn: str) -> str:
        key = (obj, fn)
        found = self.cache.get(key)
        if found is None:
            found = self.cache[key] = self._group(os.path.basename(obj), fn)
        return found

    def _group(self, obj: str, fn: str) -> str:
        if "__mypyc" in obj:
            name = _CPY_PREFIX.sub("", fn, count=1)
            for prefix, group in self.prefixes:
                if name.startswith(prefix):
                    return group
            return "mypyc runtime"
        if obj.startswith(("libssl", "libcrypto", "_ssl.")):
            return "TLS"
        if obj.startswith("loop.") or "uvloop" in obj or obj.startswith("_asyncio."):
            return "TLS" if _SSL_NAMES.search(fn) else "event loop"
        if "httptools" in obj or obj.startswith("parser.") or obj.startswith("url_parser."):
            return "codec"
        if obj.startswith(("libpython", "python")):
            return "interpreter"
        if obj.startswith(("libc.", "libc-", "ld-linux", "libm.", "libpthread")):
            return "libc"
        if obj.endswith(".so") and "trellis" in obj:
            return "other Trellis"
        return "other"


@dataclass
class Profile:
    """One callgrind profile: self cost per function, calls per call arc."""

    self_cost: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    calls: dict[tuple[tuple[str, str], tuple[str, str]], int] = field(
        default_factory=lambda: defaultdict(int)
    )
    total: int = 0

    def minus(self, other: Profile) -> Profile:
        """What this run did beyond `other` (the extra requests): costs and calls
        subtracted function by function and arc by arc."""
        out = Profile(total=self.total - other.total)
        for f in {*self.self_cost, *other.self_cost}:
            out.self_cost[f] = self.self_cost.get(f, 0) - other.self_cost.get(f, 0)
        for arc in {*self.calls, *other.calls}:
            out.calls[arc] = self.calls.get(arc, 0) - other.calls.get(arc, 0)
        return out


def parse(path: Path) -> Profile:
    """Read a callgrind output file (name compression, relative positions, one event)."""
    names: dict[str, dict[str, str]] = {"ob": {}, "fl": {}, "fn": {}}
    kind_of = {"ob": "ob", "cob": "ob", "fn": "fn", "cfn": "fn"}
    for k in ("fl", "fi", "fe", "cfi", "cfl"):
        kind_of[k] = "fl"
    profile = Profile()
    ob = fn_name = ""
    callee_ob: str | None = None
    callee_fn = ""
    in_call = False
    count = 0

    def name(kind: str, value: str) -> str:
        table = names[kind_of[kind]]
        if value.startswith("("):
            ident, _, rest = value.partition(")")
            ident += ")"
            rest = rest.strip()
            if rest:
                table[ident] = rest
                return rest
            return table.get(ident, ident)
        return value

    with path.open(errors="replace") as lines:
        for line in lines:
            c = line[:1]
            if c.isdigit() or c in "+-*":
                fields = line.split()
                cost = int(fields[1]) if len(fields) > 1 else 0
                if in_call:  # the call's inclusive cost: not needed
                    callee = (callee_ob if callee_ob is not None else ob, callee_fn)
                    profile.calls[((ob, fn_name), callee)] += count
                    in_call, callee_ob = False, None
                else:
                    profile.self_cost[(ob, fn_name)] += cost
                continue
            key, sep, value = line.rstrip("\n").partition("=")
            if not sep:
                if line.startswith(("summary:", "totals:")):
                    profile.total = max(profile.total, int(line.split()[1]))
                continue
            if key == "ob":
                ob = name(key, value)
            elif key == "fn":
                fn_name = name(key, value)
            elif key in ("fl", "fi", "fe", "cfi", "cfl"):
                name(key, value)
            elif key == "cob":
                callee_ob = name(key, value)
            elif key == "cfn":
                callee_fn = name(key, value)
            elif key == "calls":
                in_call, count = True, int(value.split()[0])
    return profile


def charge(profile: Profile, grouper: Grouper) -> tuple[dict[str, float], dict[str, float]]:
    """(self, charged) instructions per group, as the module docstring defines them."""
    self_by: dict[str, float] = defaultdict(float)
    group = {f: grouper(*f) for f in profile.self_cost}
    for caller, callee in profile.calls:
        group.setdefault(caller, grouper(*caller))
        group.setdefault(callee, grouper(*callee))
    for f, cost in profile.self_cost.items():
        self_by[group[f]] += cost
    callers: dict[tuple[str, str], list[tuple[tuple[str, str], int]]] = defaultdict(list)
    for (caller, callee), count in profile.calls.items():
        if caller != callee and count > 0:
            callers[callee].append((caller, count))
    # Shares of each runtime function among owning groups: iterate to the fixed point
    # (recursion through the interpreter converges geometrically).
    runtime = [f for f, g in group.items() if g in RUNTIME]
    shares: dict[tuple[str, str], dict[str, float]] = {f: {group[f]: 1.0} for f in runtime}
    for _ in range(60):
        changed = 0.0
        for f in runtime:
            arcs = callers.get(f)
            if not arcs:
                continue  # a root (thread start): keeps its own group
            total = float(sum(count for _, count in arcs))
            new: dict[str, float] = defaultdict(float)
            for caller, count in arcs:
                weight = count / total
                if group[caller] in RUNTIME:
                    for g, s in shares[caller].items():
                        new[g] += weight * s
                else:
                    new[group[caller]] += weight
            old = shares[f]
            changed = max(
                changed, max(abs(new.get(g, 0.0) - old.get(g, 0.0)) for g in {*new, *old})
            )
            shares[f] = dict(new)
        if changed < 1e-9:
            break
    charged: dict[str, float] = defaultdict(float)
    for f, cost in profile.self_cost.items():
        if group[f] in RUNTIME:
            for g, s in shares[f].items():
                charged[g] += cost * s
        else:
            charged[group[f]] += cost
    return dict(self_by), dict(charged)


@dataclass(frozen=True, slots=True)
class Measured:
    """Per-request instructions of one process by group, and its total."""

    name: str
    self_cost: dict[str, float]
    charged: dict[str, float]
    total: float


def _difference(
    name: str, first: Profile, second: Profile, requests: int, grouper: Grouper
) -> Measured:
    """Per request: the second run minus the first (start-up and shutdown cancel out; the
    runtime is charged by the calls the extra requests made)."""
    extra = second.minus(first)
    self_cost, charged = charge(extra, grouper)
    return Measured(
        name,
        {g: c / requests for g, c in self_cost.items()},
        {g: c / requests for g, c in charged.items()},
        extra.total / requests,
    )


CALLGRIND = ["valgrind", "--tool=callgrind", "--separate-threads=yes"]


def _env(src: Path) -> dict[str, str]:
    return {"PYTHONPATH": f"{src}{os.pathsep}{REPO}", "PYTHONHASHSEED": "0"}


def sidecar_profiles(src: Path, requests: int, mtls: bool, keep: Path) -> dict[str, Path]:
    """Run the pair under callgrind with `requests` through; the event loop thread's
    profile of each sidecar, copied into `keep`. A sidecar that cannot start is tried
    again (twice): under callgrind on a busy machine its first call to the CA can miss
    the CA's 10 s deadline (mTLS), and then it exits."""
    for attempt in range(3):
        try:
            return _sidecar_profiles(src, requests, mtls, keep)
        except SidecarStartError as exc:
            if attempt == 2:
                raise
            print(f"  a sidecar did not start ({exc.reason}); again", flush=True)
    raise AssertionError("unreachable")


class SidecarStartError(RuntimeError):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason.splitlines()[0]


def _sidecar_profiles(src: Path, requests: int, mtls: bool, keep: Path) -> dict[str, Path]:
    saved = {k: os.environ.get(k) for k in _env(src)}
    os.environ.update(_env(src))  # the children inherit it
    try:
        with tempfile.TemporaryDirectory(prefix="trellis-profile-") as tmp:
            logs = Path(tmp)
            backend_port = free_port()
            backend = haproxy.start(haproxy.backend_config(backend_port), logs, "backend", [])
            callgrind = [*CALLGRIND, f"--callgrind-out-file={logs}/cg.%p"]
            pair = sidecars.SidecarPair(logs, backend_port, [], callgrind, mtls=mtls)
            try:
                _wait_listening(backend, backend_port, 30)
                try:
                    pair.start(timeout=600)
                except RuntimeError as exc:
                    raise SidecarStartError(str(exc)) from exc
                _send(pair.outbound_port, requests)
                pids = {name: child.pid for name, child in pair.proxies.items()}
                for child in pair.proxies.values():
                    child.stop(grace=STOP_GRACE)
            finally:
                pair.stop()
                backend.stop()
            return _keep(logs, pids, keep, f"{'mtls' if mtls else 'plain'}-{requests}")
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def relay_profiles(requests: int, tls: bool, keep: Path) -> dict[str, Path]:
    """The yardstick pair (`bench.minimal_relay`, TLS between them when `tls`) under
    callgrind with `requests` through."""
    with tempfile.TemporaryDirectory(prefix="trellis-profile-relay-") as tmp:
        logs = Path(tmp)
        tls_dir = write_tls_files(logs / "tls").ca.parent
        backend_port, second, first = free_port(), free_port(), free_port()
        backend = haproxy.start(haproxy.backend_config(backend_port), logs, "backend", [])
        children: list[Child] = []
        try:
            _wait_listening(backend, backend_port, 30)
            relay = [
                *CALLGRIND,
                f"--callgrind-out-file={logs}/cg.%p",
                sys.executable,
                "-m",
                "bench.minimal_relay",
            ]
            second_options = ["--tls-listen", str(tls_dir)] if tls else []
            first_options = ["--tls-upstream", str(tls_dir)] if tls else []
            for listen, upstream, name, options in (
                (second, backend_port, "relay 2", second_options),
                (first, second, "relay 1", first_options),
            ):
                child = Child(
                    [*relay, str(listen), str(upstream), *options],
                    logs,
                    name.replace(" ", "-"),
                    env={"PYTHONPATH": str(REPO), "PYTHONHASHSEED": "0"},
                )
                children.append(child)
                _wait_listening(child, listen, 300)
            _send(first, requests)
            pids = {"relay 1": children[1].pid, "relay 2": children[0].pid}
            for child in reversed(children):
                child.stop(grace=STOP_GRACE)
        finally:
            for child in reversed(children):
                child.stop()
            backend.stop()
        return _keep(logs, pids, keep, f"relay-{'tls' if tls else 'plain'}-{requests}")


def _keep(logs: Path, pids: dict[str, int], keep: Path, tag: str) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for name, pid in pids.items():
        source = logs / f"cg.{pid}-01"  # the event loop's thread (bench.instructions)
        if not source.exists():
            raise RuntimeError(f"{name}: no callgrind profile (did it exit cleanly?)")
        target = keep / f"{tag}-{name.replace(' ', '-')}.cg"
        shutil.copyfile(source, target)
        out[name] = target
    return out


def measure(
    src: Path, n1: int, n2: int, mtls: bool, keep: Path, reuse: bool = False
) -> tuple[list[Measured], list[Measured]]:
    """(the sidecars, the relays), per request. `reuse`: read the profiles a previous
    run kept in `keep` instead of running anything."""
    grouper = Grouper(_compiled_modules(src))
    kind, relay_kind = ("mtls", "relay-tls") if mtls else ("plain", "relay-plain")
    if reuse:
        first, second = (_kept(keep, f"{kind}-{n}", SIDECARS) for n in (n1, n2))
        r1, r2 = (_kept(keep, f"{relay_kind}-{n}", RELAYS) for n in (n1, n2))
    else:
        first = sidecar_profiles(src, n1, mtls, keep)
        second = sidecar_profiles(src, n2, mtls, keep)
        r1, r2 = relay_profiles(n1, mtls, keep), relay_profiles(n2, mtls, keep)
    sidecar = [_difference(n, parse(first[n]), parse(second[n]), n2 - n1, grouper) for n in first]
    relay = [_difference(n, parse(r1[n]), parse(r2[n]), n2 - n1, grouper) for n in r1]
    return sidecar, relay


SIDECARS = ("sidecar A", "sidecar B")
RELAYS = ("relay 1", "relay 2")


def _kept(keep: Path, tag: str, names: tuple[str, ...]) -> dict[str, Path]:
    return {name: keep / f"{tag}-{name.replace(' ', '-')}.cg" for name in names}


def _compiled_modules(src: Path) -> list[str]:
    """`trellis.compiled.MODULES` of the build at `src`, read without importing trellis."""
    text = (src / "trellis" / "compiled.py").read_text()
    block = text[text.index("MODULES") : text.index(")", text.index("MODULES"))]
    return re.findall(r'"(trellis\.[\w.]+)"', block)


def render(sidecar: list[Measured], relay: list[Measured], mtls: bool, n1: int, n2: int) -> str:
    kind = "mTLS" if mtls else "plaintext"
    names = [m.name for m in sidecar]
    groups = [
        g
        for g in ORDER
        if any(
            abs(m.charged.get(g, 0)) >= 0.5 or m.self_cost.get(g, 0) >= 0.5 for m in sidecar + relay
        )
    ]
    pair_total = sum(m.total for m in sidecar)
    relay_total = sum(m.total for m in relay)
    header = (
        "| group | "
        + " | ".join(f"{n} self | {n} charged" for n in names)
        + " | pair charged | share | relay pair charged |"
    )
    lines = [
        f"**{kind}**: instructions per request (event loop thread; {n2} - {n1} requests).",
        "",
        header,
        "|---|" + "---:|" * (2 * len(names) + 3),
    ]
    for g in groups:
        cells = []
        for m in sidecar:
            cells += [f"{m.self_cost.get(g, 0):,.0f}", f"{m.charged.get(g, 0):,.0f}"]
        pair = sum(m.charged.get(g, 0) for m in sidecar)
        yard = sum(m.charged.get(g, 0) for m in relay)
        share = f"{pair / pair_total:.1%}" if pair_total else ""
        lines.append(f"| {g} | " + " | ".join(cells) + f" | {pair:,.0f} | {share} | {yard:,.0f} |")
    totals = []
    for m in sidecar:
        totals += [f"{m.total:,.0f}", f"{m.total:,.0f}"]
    lines.append(
        "| **total** | "
        + " | ".join(totals)
        + f" | {pair_total:,.0f} | 100% | {relay_total:,.0f} |"
    )
    lines.append("")
    lines.append(
        f"The pair costs {pair_total / relay_total:.2f}x its yardstick"
        f" ({pair_total:,.0f} against {relay_total:,.0f} instructions per request)."
        if relay_total
        else ""
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--mtls", action="store_true", help="mesh mTLS (and TLS relays)")
    parser.add_argument("--requests", type=int, nargs=2, default=(500, 3000), metavar="N")
    parser.add_argument("--src", type=Path, default=REPO / "src", help="a checkout's src")
    parser.add_argument("--keep", type=Path, help="keep the callgrind profiles in this directory")
    parser.add_argument(
        "--reuse", action="store_true", help="read the profiles kept in --keep, run nothing"
    )
    parser.add_argument(
        "--update-docs", action="store_true", help="write the table into docs/benchmarks.md"
    )
    args = parser.parse_args(argv)
    n1, n2 = args.requests
    if args.reuse and args.keep is None:
        parser.error("--reuse needs --keep DIR")
    keep = args.keep or Path(tempfile.mkdtemp(prefix="trellis-profiles-"))
    keep.mkdir(parents=True, exist_ok=True)
    sidecar, relay = measure(args.src.resolve(), n1, n2, args.mtls, keep, args.reuse)
    markdown = render(sidecar, relay, args.mtls, n1, n2)
    print(markdown, flush=True)
    print(f"profiles kept in {keep}", flush=True)
    if args.update_docs:
        name = "profile-mtls" if args.mtls else "profile"
        command = shlex.join(["python", "-m", "bench.profile", *(argv or sys.argv[1:])])
        update_docs([Section(name, markdown)], command)
        print("docs/benchmarks.md updated", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
