"""The benchmarks behind RESULTS.md: one script per experiment, a driver and a renderer.

``python -m benchmarks.run --budget small`` runs them all and renders ``RESULTS.md``;
see ``benchmarks/plan.py`` for what each budget runs.
"""
