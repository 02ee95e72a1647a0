"""Pure policy: plain functions over plain data, no I/O and no clock of their own.

Admission and retry backoff, cron arithmetic and schedule policies, and the
outcome of a finished container. The runtime applies what these decide.
"""
