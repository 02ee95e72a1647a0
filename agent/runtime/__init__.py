"""The agent's threads: the reconcile loop (decides), the work it hands off
(does), the scheduler thread, and the change feed that waiters block on.

The runtime never parses JSON-RPC; the api layer calls into it.
"""
