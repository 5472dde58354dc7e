"""The sidecar proxy: data plane of the mesh."""
