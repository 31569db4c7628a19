"""Django's documented ``PyLibMCCache`` configuration for the binary
protocol with SASL, against a server started with ``-S``:

    "OPTIONS": {"binary": True, "username": "user", "password": "pass",
                "behaviors": {"ketama": True}}

The tutorial site's per-view cache and Django's cache API run through it.
A server with ``-S`` serves only the binary protocol and only to
authenticated connections, so every hit below went that way.
"""

from __future__ import annotations

import pylibmc
import pytest
from django.test import Client

from support import sasl
from support.upstream import FAST_DELAY

BACKEND = "django.core.cache.backends.memcached.PyLibMCCache"


def docs_options(password: str) -> dict:
    return {
        "binary": True,
        "username": sasl.USER,
        "password": password,
        "behaviors": {"ketama": True},
    }


def use(settings, server, password: str = sasl.PASSWORD):
    settings.CACHES = {
        "default": {
            "BACKEND": BACKEND,
            "LOCATION": server.hostport,
            "OPTIONS": docs_options(password),
        }
    }
    from django.core.cache import cache

    return cache


@pytest.fixture
def sasl_cache(sasl_server, settings):
    cache = use(settings, sasl_server)
    yield cache
    cache.close()


def test_the_documented_configuration_caches_a_view(sasl_cache, upstream, settings, db):
    settings.UPSTREAM_URL = upstream.url(FAST_DELAY)
    upstream.reset()
    client = Client()
    first = client.get("/cached/")
    assert first.status_code == 200 and b"Results received!" in first.content
    assert upstream.calls == 1
    second = client.get("/cached/")
    assert second.status_code == 200
    assert upstream.calls == 1, "the second request should come from the cache"
    assert second.content == first.content
    # The uncached view beside it still calls the upstream.
    assert client.get("/").status_code == 200
    assert upstream.calls == 2


def test_the_cache_api_over_binary_and_sasl(sasl_cache):
    cache = sasl_cache
    cache.set("k", {"a": [1, 2]}, 60)
    assert cache.get("k") == {"a": [1, 2]}
    assert cache.add("k", "other") is False
    assert cache.add("new", "v") is True
    assert cache.get_or_set("lazy", lambda: "made") == "made"
    cache.set("n", 10)
    assert cache.incr("n", 5) == 15
    assert cache.decr("n", 20) == 0
    with pytest.raises(ValueError):
        cache.incr("missing")
    cache.set_many({"m1": 1, "m2": "two"})
    assert cache.get_many(["m1", "m2", "absent"]) == {"m1": 1, "m2": "two"}
    assert cache.touch("k", 100) is True
    assert cache.touch("absent", 100) is False
    assert cache.has_key("k")
    assert cache.delete("k") is True
    assert cache.delete("k") is False
    big = "x" * 400_000
    cache.set("big", big)
    assert cache.get("big") == big
    # Over 30 days: memcached's absolute form of the expiration.
    cache.set("long", "v", 40 * 24 * 3600)
    assert cache.get("long") == "v"
    cache.clear()
    assert cache.get("m1") is None


def test_a_wrong_password_gets_nothing_cached(sasl_server, settings):
    cache = use(settings, sasl_server, password="wrong")
    try:
        with pytest.raises(pylibmc.Error, match="AUTHENTICATION FAILURE"):
            cache.set("k", "v")
    finally:
        cache.close()
    good = use(settings, sasl_server)
    try:
        assert good.get("k") is None
    finally:
        good.close()
