"""Postgres: the only package that imports psycopg.

Owns the pool (``Database``; psycopg errors leave as ``StorageError``), migrations
(``schema/*.sql``), the event store (and its in-memory fake), checkpoints, the key cache table,
replay's page source and table swap, the usage table and its partitions, audit queries, the
export's rows, the audit signing keys and export anchors, rate windows, last-used times, advisory
locks and NOTIFY. Public classes take a ``Database`` and speak domain types only;
``Database._connection`` is for this package alone.
May import: domain, projections, observe and the kernel; no other adapter.
"""
