"""Hearth: scale-to-zero serving of self-hosted LLMs on Kubernetes. This package is the `hearth` command."""

__version__ = "0.1.0"
