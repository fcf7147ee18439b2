"""Janus 1.1 (Debian's `janus` package) with its VideoRoom plugin, driven for comparison."""
