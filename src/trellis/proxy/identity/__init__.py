"""The proxy's mesh identity: its key and SVID, obtained from the control plane's CA and
renewed before they expire, and the TLS contexts built from them."""
