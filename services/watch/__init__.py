"""Suspicious-activity findings: the watch role (a durable consumer of the usage stream that applies the rules
of ``domain.finding_rules`` to each key's profile and stores findings, their ``key.finding`` notices and the
profiles in one transaction per fetch), the automatic revocation some findings call for, and the rebuild of
findings from the usage table.

May import: domain, projections, the adapters, observe and the kernel; no other application package (the key
view and the revocation reach it as functions from the composition root).
"""
