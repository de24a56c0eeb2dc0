"""Leaked keys: the intake of reports (a code host's secret scanning, the public report endpoint, the
scanner), the check of each reported token against the keys with the same bounded argon2 work as verify,
the response (revoke, or record and notify), and the scanner that finds tokens in files and git history.
"""
