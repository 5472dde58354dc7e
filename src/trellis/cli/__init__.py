"""The `trellis` command line: one module per command, all talking to the REST API."""
