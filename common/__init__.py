"""I/O helpers that Hearth's services share, and nothing else: the Kubernetes client and its one informer,
bounded request bodies, the event loop, durations on the command line.

`webhook`, `gateway` and `scaler` import this package and `policies`, never each other nor the CLI
(`hearth`); the import contracts in pyproject.toml hold them to it.
"""
