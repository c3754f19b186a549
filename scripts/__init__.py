"""Developer tools: `make run`'s launcher and the harness that starts a local stack."""
