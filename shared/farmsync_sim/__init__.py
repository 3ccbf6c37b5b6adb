"""In-process fakes of the systems farmsync talks to, for tests, the demo and benchmarks (loopback only)."""
