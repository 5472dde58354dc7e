"""What the proxy holds from xDS: resources decoded and validated into config objects
(`resources`), and the state that accepts or refuses whole responses (`state`)."""
