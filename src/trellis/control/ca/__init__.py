"""The mesh CA: X.509 SVIDs for workloads, join tokens, the trust bundle, root rotation.

Pure logic first, I/O second:
- `spiffe.py`, `pki.py`, `tokens.py` are pure (certificates, names, token format);
- `authority.py` is the CA's state and its signing, rotation and bundle (pure);
- `files.py` (the `ca/` directory) and `db.py` (`ca.db`) are its storage;
- `issuer.py` is the live CA the API and the gRPC service call: who may get what;
- `service.py` is the gRPC service `trellis.ca.v1.Certificates` (JSON bodies);
- `serving.py` is the control plane's own TLS certificate for the secure port;
- `front.py` terminates TLS on the secure port, `peers.py` remembers who is behind
  each forwarded connection, `binding.py` binds an ADS node to its certificate;
- `secure_port.py` puts the secure port together.
"""
