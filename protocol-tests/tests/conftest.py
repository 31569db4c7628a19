"""Django fixtures: the tutorial site wired to the server under test."""

from __future__ import annotations

import time

import pytest

from support.upstream import FAST_DELAY

BACKENDS = ["pymemcache", "pylibmc", "pylibmc-binary"]


@pytest.fixture(params=BACKENDS)
def django_backend(request):
    return request.param


def use_cache(settings, backend: str, location: str) -> None:
    """Point Django's default cache at ``location`` through ``backend``."""
    from cachesite.settings import caches_for

    settings.CACHES = caches_for(backend, location)


@pytest.fixture
def django_cache(server, settings, django_backend):
    """Django's ``cache`` through the chosen backend on the server under test."""
    from django.core.cache import cache

    use_cache(settings, django_backend, server.django_location)
    yield cache
    cache.close()


class Site:
    """The tutorial site behind Django's test client, with the stub upstream."""

    def __init__(self, upstream, settings):
        from django.test import Client

        self.upstream = upstream
        self.settings = settings
        self.client = Client()

    @property
    def calls(self) -> int:
        return self.upstream.calls

    def get(self, path: str):
        response = self.client.get(path)
        assert response.status_code == 200, (path, response.status_code, response.content[:500])
        return response

    def wait_for_expiry(self, ttl: float | None = None) -> None:
        """Sleep past a TTL. memcached's clock ticks once a second, so an
        item with TTL n lives between n-1 and n seconds."""
        ttl = self.settings.CACHE_TTL if ttl is None else ttl
        time.sleep(ttl + 0.5)


@pytest.fixture
def site(django_cache, upstream, settings, db):
    settings.UPSTREAM_URL = upstream.url(FAST_DELAY)
    upstream.reset()
    s = Site(upstream, settings)
    yield s
