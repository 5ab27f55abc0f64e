"""The local cluster: real nginx + hubs + routers + Redis + MariaDB on 127.0.0.1.

``python -m deploy.local.cluster up`` for people, :class:`deploy.local.cluster.LocalCluster`
for tests and benchmarks.
"""
