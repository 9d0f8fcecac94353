"""Benchmarks of the service against a raw Temporal baseline on the same dev server (docs/performance.md)."""
