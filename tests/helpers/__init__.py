"""Helpers shared by the tests: data they write for themselves, stored update scenarios."""
