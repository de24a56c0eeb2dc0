"""keyledger benchmarks: ``python -m bench`` (or ``make bench``) runs them and rewrites RESULTS.md."""
