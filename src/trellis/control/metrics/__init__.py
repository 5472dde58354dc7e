"""Metrics on the control plane's side: the scrape token, and Prometheus HTTP SD targets."""
