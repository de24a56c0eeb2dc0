"""The ``keyledger`` command (``python -m keyledger.services.cli``): keys, workers, replay, audit,
serve and the dev stack. May import everything in services.
"""
