"""The xDS resource types the proxy subscribes to: type URLs and their short names.

The values are the wire contract's (`trellis.wire`, shared with the control plane);
this module names them for the xDS client. Knows nothing of streams or resources.
"""

from __future__ import annotations

from trellis.wire import CLUSTER_TYPE as CLUSTER_TYPE
from trellis.wire import ENDPOINT_TYPE as ENDPOINT_TYPE
from trellis.wire import LISTENER_TYPE as LISTENER_TYPE
from trellis.wire import ROUTE_TYPE as ROUTE_TYPE
from trellis.wire import SHORT_NAMES as SHORT_NAMES
from trellis.wire import short_name as short_name
