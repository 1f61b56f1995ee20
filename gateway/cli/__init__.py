"""The `memgate` command line: serve, admin twins of the API, and the demo."""
