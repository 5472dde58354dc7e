"""Pure request → route selection over Envoy xDS v3 RouteConfigurations.

Shared by the sidecar proxy (on every request) and by simulation tests of the
control plane's translated config. `RouteTable.compile(rc)` turns a
RouteConfiguration into plain objects once per config version (precompiled
regexes, tuples, `__slots__` classes) and raises `RouteConfigError(path,
reason)` for anything the proxy cannot apply, which the xDS client NACKs.
`table.select(authority, method, path, headers)` then returns the `Route` or
None (404), with no I/O, no clock and no protobuf access; `table.explain(...)`
takes the same steps and also says why each route it tried did not match.

Decisions (Envoy's behaviour unless said otherwise):
- Virtual hosts: exact domain, then the longest `*suffix`, the longest
  `prefix*`, then `*`; case-insensitive. The authority's port is stripped
  before matching when the config sets `ignore_port_in_host_matching` or when
  no domain carries a port; otherwise it is matched as given (Envoy's default).
- Regexes: RE2 (google-re2) as in Envoy, full match for matchers, GlobalReplace
  for rewrites, refused over MAX_PROGRAM_SIZE (see regex.py).
- `timeout`: RouteAction.timeout, None for `0s` or unset (Envoy's unset
  default is 15 s: our control plane always sets it for sidecars).
- Retries: `num_retries` 1 when unset, backoff 25 ms base, max 10x the base.
- A set field the proxy does not apply is a config error, unless it is known
  to change nothing the proxy decides (stats names, CORS, tracing, ...).
- Randomness comes from the caller: `ForwardAction.pick(r)`,
  `FaultPolicy.delay_for(r)` / `abort_for(r)`, mirror fractions, all for r
  uniform in [0, 1).
"""

from trellis.routing.actions import (
    Action,
    DirectResponseAction,
    ForwardAction,
    NonForwardingAction,
    RedirectAction,
)
from trellis.routing.errors import RouteConfigError
from trellis.routing.fault import FAULT_FILTER, FaultPolicy
from trellis.routing.hashing import HashPolicy, hash_keys
from trellis.routing.headers import HeaderMutation, HeaderToAdd, apply_header_mutations
from trellis.routing.matchers import parse_query, split_target
from trellis.routing.retry import RetryPolicy
from trellis.routing.rewrite import PathRewrite
from trellis.routing.route import Route
from trellis.routing.table import RouteCheck, RouteTable, Selection, VirtualHost

__all__ = [
    "FAULT_FILTER",
    "Action",
    "DirectResponseAction",
    "FaultPolicy",
    "ForwardAction",
    "HashPolicy",
    "HeaderMutation",
    "HeaderToAdd",
    "NonForwardingAction",
    "PathRewrite",
    "RedirectAction",
    "RetryPolicy",
    "Route",
    "RouteCheck",
    "RouteConfigError",
    "RouteTable",
    "Selection",
    "VirtualHost",
    "apply_header_mutations",
    "hash_keys",
    "parse_query",
    "split_target",
]
