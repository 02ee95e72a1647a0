"""The agent's API: the use cases (service), their JSON-RPC binding (rpc) and
the Unix socket that carries them (server). The api never touches Podman.
"""
