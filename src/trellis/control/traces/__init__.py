"""The control plane's built-in trace store: an OTLP receiver and recent traces, bounded.

- `limits`/`trellis.control.limits`: what one Export may carry.
- `records`: what is kept of a span and a trace (index fields, the span's protobuf bytes).
- `store`: `TraceStore`, the bounded store with its indexes and statistics (pure, no I/O).
- `query`: the search parameters (`TraceQuery`) and their parsing.
- `export`: one Export request (bytes) -> stored spans, a partial success, or a refusal.
- `receiver`: the gRPC `TraceService` (both gRPC ports of the control plane).
- `waterfall`: a trace as a tree with offsets, self times and the slowest span (pure).
- `views`: the JSON shapes the API serves (summaries, a trace with its waterfall).
"""

import trellis.otlp_check  # noqa: F401  (before any OTLP message module)
