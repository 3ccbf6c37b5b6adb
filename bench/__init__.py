"""farmsync's benchmarks: each compares side by side in one run and writes its figures to bench/out/<name>.json.

``python -m bench.run_all`` (``make bench``) runs them all and writes bench/results.json and bench/RESULTS.md.
"""
