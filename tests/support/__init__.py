"""Helpers shared by every test layer: builders, waiting, environment, and real server processes."""
