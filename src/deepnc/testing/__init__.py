"""Helpers for tests and benchmarks, not for training: the slow, obviously correct
reference update that the fast one is tested against, and a launcher of ``torchrun``
groups whose workers can be killed."""
