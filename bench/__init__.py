"""Benchmarks: each compares flashsnap-mcp with baselines measured in the same run (`make bench`)."""
