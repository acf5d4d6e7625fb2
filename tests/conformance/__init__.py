"""Conformance suites: one set of tests run against every storage implementation (STYLE P7)."""
