"""Every role of the job store on one client, for tests that drive a job from both sides."""

from __future__ import annotations

from app.store.jobs import JobStore
from app.store.leases import LeaseHolder
from app.store.reaper import Reaper


class AllRoles(JobStore, LeaseHolder, Reaper):
    """The API's, a running worker's and the reaper's view of the store at once: the
    store's tests create a job as the API does and then work it as a worker does."""

# The tenant of the jobs that store-level tests create (the API's tests use real tenants).
TENANT = "tnt_storetests"
