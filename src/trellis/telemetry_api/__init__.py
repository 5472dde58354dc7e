"""The wire contract of the telemetry stream (proxy <-> control plane): telemetry.proto and the
modules grpcio-tools generates from it (tools/gen_telemetry_proto.py). Both planes import it;
neither redefines it."""
