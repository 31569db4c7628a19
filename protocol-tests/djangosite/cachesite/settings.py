"""Settings for the site from the "Caching in Django" tutorial.

Everything that differs between a test run, the measurement and a developer's
laptop comes from the environment:

- CACHE_BACKEND: "pymemcache" (PyMemcacheCache), "pylibmc" (PyLibMCCache) or
  "pylibmc-binary" (PyLibMCCache over the binary protocol with ketama, as
  Django's documentation configures it)
- CACHE_LOCATION: "127.0.0.1:11211", or "unix:/path/to.sock" for a socket
- CACHE_TTL: seconds the cached views live (the tutorial uses 15 minutes)
- UPSTREAM_URL: the slow external API (the tutorial calls httpbin's /delay/2)
- DJANGO_DB_PATH: the sqlite file
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "protocol-tests-not-a-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "0") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "apicalls.apps.ApicallsConfig",
]

MIDDLEWARE = [
    "django.middleware.common.CommonMiddleware",
]

ROOT_URLCONF = "cachesite.urls"
WSGI_APPLICATION = "cachesite.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": []},
    },
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DJANGO_DB_PATH", str(BASE_DIR / "db.sqlite3")),
    }
}

USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- caching ---------------------------------------------------------------

CACHE_BACKENDS = {
    "pymemcache": "django.core.cache.backends.memcached.PyMemcacheCache",
    "pylibmc": "django.core.cache.backends.memcached.PyLibMCCache",
    "pylibmc-binary": "django.core.cache.backends.memcached.PyLibMCCache",
}


def cache_location(backend: str, location: str) -> str:
    """Django spells a unix socket "unix:/path" for pymemcache and a bare
    "/path" for pylibmc; accept the first form for both."""
    if backend.startswith("pylibmc") and location.startswith("unix:"):
        return location[len("unix:"):]
    return location


# Bounded waits, so a stuck server fails a request instead of hanging it.
CACHE_OPTIONS = {
    "pymemcache": {"connect_timeout": 5, "timeout": 10},
    "pylibmc": {"binary": False, "behaviors": {"connect_timeout": 5000, "_poll_timeout": 10000}},
    "pylibmc-binary": {
        "binary": True,
        "behaviors": {"ketama": True, "connect_timeout": 5000, "_poll_timeout": 10000},
    },
}


def caches_for(backend: str, location: str) -> dict:
    return {
        "default": {
            "BACKEND": CACHE_BACKENDS[backend],
            "LOCATION": cache_location(backend, location),
            "OPTIONS": CACHE_OPTIONS[backend],
        }
    }


CACHE_BACKEND = os.environ.get("CACHE_BACKEND", "pymemcache")
CACHE_LOCATION = os.environ.get("CACHE_LOCATION", "127.0.0.1:11211")
CACHES = caches_for(CACHE_BACKEND, CACHE_LOCATION)

CACHE_TTL = int(os.environ.get("CACHE_TTL", str(60 * 15)))

UPSTREAM_URL = os.environ.get("UPSTREAM_URL", "http://127.0.0.1:8081/delay/2")
UPSTREAM_TIMEOUT = float(os.environ.get("UPSTREAM_TIMEOUT", "30"))
