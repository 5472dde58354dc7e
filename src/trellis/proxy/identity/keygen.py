"""`python -m trellis.proxy.identity.keygen`: the X.509 work of a sidecar's identity, in a
child process, so that the sidecar itself never loads `cryptography`.

One JSON object per line on stdin, one answer per line on stdout:
- `{"op": "new"}` → `{"key": PEM, "csr": PEM}`: a new P-256 key and its CSR;
- `{"op": "parse", "chain": PEM, "key": PEM, "bundle": PEM}` → the SVID's fields
  (`spiffe_id`, `serial`, `not_before`, `not_after`, ISO 8601), or `{"error": reason}`.
The child ends at EOF. It writes nothing else: the key goes only to its parent.
"""

from __future__ import annotations

import json
import sys

from trellis.proxy.identity import crypto


def answer(request: dict[str, str]) -> dict[str, object]:
    op = request.get("op")
    if op == "new":
        key = crypto.new_key()
        return {"key": crypto.key_pem(key).decode(), "csr": crypto.csr_pem(key).decode()}
    if op == "parse":
        try:
            svid = crypto.parse_svid(
                request["chain"].encode(), request["key"].encode(), request["bundle"].encode()
            )
        except (KeyError, ValueError) as e:
            return {"error": str(e)}
        return {
            "spiffe_id": svid.spiffe_id,
            "serial": svid.serial,
            "not_before": svid.not_before.isoformat(),
            "not_after": svid.not_after.isoformat(),
        }
    return {"error": f"unknown op {op!r}"}


def main() -> None:
    for line in sys.stdin:
        sys.stdout.write(json.dumps(answer(json.loads(line))) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
