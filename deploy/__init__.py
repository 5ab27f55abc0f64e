"""Deployment files (nginx, compose, Kubernetes) and the local cluster launcher."""
