"""The ``keyledger`` command (``python -m keyledger.services.cli``): keys, workers, replay, audit,
serve and the dev stack. May import every package of services but the other entry points (http,
inprocess).
"""
