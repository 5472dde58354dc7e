"""What the proxy tells about the traffic it carries: metrics and access logs."""
