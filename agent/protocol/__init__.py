"""What client and daemon share: the RPC methods with their typed params and
results, the error codes, the job spec and its validation, job states.

Nothing in this package imports the daemon (storage, runtime, adapters, api),
so chooctl and any Python client can use it without pulling the agent in.
"""
