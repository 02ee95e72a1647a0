"""The desired state on disk: peewee models, queries and schema migrations.

One transaction per transition, with its event. Storage never knows Podman.
"""
