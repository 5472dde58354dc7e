"""Bounds on what a manifest may be: nesting depth, alias expansion, the size of one apply.

Each bound sits far above any real resource and far below what would hurt the
process that reads the manifest (the CLI, or the control plane). Pure
constants: both planes import them, so the CLI and the REST API agree.
"""

from __future__ import annotations

# Nesting levels of mappings and sequences in one document (its root is level 1). The
# deepest mapping of any kind (`spec.rules[].filters[].requestMirror.backendRef`) is at
# level 8; PyYAML composes recursively and died with RecursionError at 400-500 levels.
MAX_DEPTH = 64

# YAML aliases (`*name`, and `<<: *name` merges) repeat what they name. What all the
# aliases of a stream repeat, counted as 1 per node plus the characters of its scalars,
# may not exceed the stream's own length or this floor, whichever is larger: expanded, a
# manifest stays within about twice its text (a "billion laughs" file of 1 KB would be
# gigabytes). A real manifest that shares a label map or a match repeats a few hundred.
MIN_ALIAS_EXPANSION = 65_536

# The largest JSON body of one apply (`POST /api/v1/apply`, `POST /api/v1/delete`) that
# the CLI sends and the control plane must accept. An apply is one store transaction
# (all or nothing), so it cannot be split across requests: this is one request's bound.
# 10,000 documents of a typical mix encode to about 3.5 MB (docs/benchmarks.md).
MAX_APPLY_BYTES = 16 * 1024 * 1024
# Documents in one apply or delete: twice the 10,000 a bulk apply is measured with.
MAX_APPLY_DOCUMENTS = 20_000
