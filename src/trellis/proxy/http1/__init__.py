"""HTTP/1.1 codec over httptools (llhttp): bytes in, heads and body events out; heads and
framing out as bytes. Sans-IO: no sockets, no event loop."""
