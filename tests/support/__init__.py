"""Helpers shared by the test files: fixtures in real on-disk formats, reference models, fault injection."""
