"""Where traffic enters the proxy: outbound, inbound and admin listeners."""
