"""The edges of the agent: thin wrappers of the outside world.

Podman (the only importer of podman-py) and the Podman service, the journal,
systemd notification, job files (workspaces, artifacts), credentials and the
start-up checks. Adapters do what they are told; they decide no policy.
"""
