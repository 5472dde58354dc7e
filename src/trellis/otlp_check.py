"""Refuse, with the fix, an `opentelemetry.proto` package overwritten by xds-protos' old copy.

xds-protos installs its own, older `opentelemetry/proto/` files (without
`InstrumentationScope`) into the same directory as `opentelemetry-proto`; whichever package
pip writes last wins. Every module that uses OTLP's messages imports this first, so a broken
install fails at start with a sentence that says what to run, not with an ImportError deep in
a protobuf module. `make install` writes opentelemetry-proto last (Makefile).
"""

from __future__ import annotations

from opentelemetry.proto.common.v1 import common_pb2

REINSTALL = 'pip install --force-reinstall --no-deps "opentelemetry-proto>=1.45,<2"'

if not hasattr(common_pb2, "InstrumentationScope"):
    raise ImportError(
        "opentelemetry.proto is xds-protos' old copy (no InstrumentationScope): "
        f"it was installed after opentelemetry-proto; run: {REINSTALL}"
    )
