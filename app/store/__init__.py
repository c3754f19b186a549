"""The Redis job store: key layout, Lua transitions, leases, the worker registry, queue naming.

Plain modules that the worker imports without FastAPI.
"""
