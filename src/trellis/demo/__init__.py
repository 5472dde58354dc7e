"""The sample application `make demo` runs, and its small building blocks."""
