"""The proxy's side of the telemetry stream (issue 10): golden-signal reports and taps.

- `signals_source`: reads the metrics registry the proxy keeps anyway (the one adapter
  between it and the stream; no per-request work of its own);
- `tap`: the tap filters, their rate bound and event batches (the recorder calls it per
  finished exchange only while a tap is active);
- `stream`: the gRPC stream to the control plane, kept up with backoff.
"""
