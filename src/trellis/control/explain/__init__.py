"""`trellis explain`: the decision trail of one request, as the sidecars would take it.

`explain(push, request, connected)` follows a request from the source service's
sidecar to each destination endpoint's sidecar, on the config the control plane
serves those nodes (the PushContext being pushed): it generates exactly the resources
each node would get (trellis.control.translate), compiles them with the proxy's own
config code (trellis.proxy.config.resources) and evaluates them with the code the
proxies run (trellis.routing's `RouteTable.explain`, the same matchers as `select`;
trellis.authz's `explain`, which is `authorize` with its trail; the listeners' path
normalization and name checks). No second implementation of a decision lives here:
only the order of the steps, as the listeners take them, and the JSON of the answer.

Modules, in the order a request meets them: inputs.py (the question), nodes.py (whose
sidecars), config.py (what they hold), outbound.py, inbound.py, trail.py (the
composition), views.py and answer.py (the JSON). Pure: no I/O, no clock; the REST
router (control/api/explain.py) hands in the current PushContext and connected nodes.
"""

from trellis.control.explain.inputs import ExplainError, ExplainRequest, parse_request
from trellis.control.explain.nodes import ConnectedNode
from trellis.control.explain.trail import explain

__all__ = ["ConnectedNode", "ExplainError", "ExplainRequest", "explain", "parse_request"]
