"""`trellis run`: what a workload needs to join the mesh (bootstrap, registration)."""
