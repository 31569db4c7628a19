"""Settings for the pytest run: short TTLs so expiry can be watched."""

from .settings import *  # noqa: F401,F403

CACHE_TTL = 2
UPSTREAM_TIMEOUT = 15
