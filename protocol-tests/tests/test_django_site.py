"""The "Caching in Django" tutorial site, on PyMemcacheCache and on
PyLibMCCache, with the cache server under test behind both.

Upstream calls are counted at the stub: a rendered page calls it, a page
served from the cache does not.
"""

from __future__ import annotations

import time
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.core.cache.utils import make_template_fragment_key
from django.db import connection
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.utils.cache import get_cache_key

from apicalls.models import Product
from apicalls.services import PRODUCTS_CACHE_KEY


def test_settings_in_use(site, settings, server, django_backend):
    assert settings.CACHE_TTL == 2
    backend = settings.CACHES["default"]["BACKEND"]
    assert backend.endswith({"pymemcache": "PyMemcacheCache", "pylibmc": "PyLibMCCache", "pylibmc-binary": "PyLibMCCache"}[
        django_backend
    ])
    assert settings.CACHES["default"]["LOCATION"] == server.hostport


def test_uncached_view_calls_upstream_every_time(site):
    for expected_calls in (1, 2, 3):
        response = site.get("/")
        assert b"Results received!" in response.content
        assert site.calls == expected_calls


@pytest.mark.slow
@pytest.mark.parametrize("path", ["/cached/", "/cached-in-urls/"])
def test_per_view_cache(site, path):
    first = site.get(path)
    assert b"Results received!" in first.content
    assert site.calls == 1
    second = site.get(path)
    assert site.calls == 1, "second request should come from the cache"
    assert second.content == first.content
    assert "max-age=2" in second["Cache-Control"]
    # the uncached URL beside it still renders every time
    site.get("/")
    assert site.calls == 2
    site.wait_for_expiry()
    site.get(path)
    assert site.calls == 3, "after the TTL the view renders again"
    site.get(path)
    assert site.calls == 3


def test_per_view_caches_are_per_url(site):
    site.get("/cached/")
    site.get("/cached-in-urls/")
    assert site.calls == 2
    site.get("/cached/")
    site.get("/cached-in-urls/")
    assert site.calls == 2
    site.get("/cached/?page=2")  # another URL, another entry
    assert site.calls == 3


@pytest.mark.slow
def test_per_site_cache(site, settings):
    from cachesite import settings_sitewide

    settings.MIDDLEWARE = settings_sitewide.MIDDLEWARE
    settings.CACHE_MIDDLEWARE_ALIAS = settings_sitewide.CACHE_MIDDLEWARE_ALIAS
    assert settings_sitewide.CACHE_MIDDLEWARE_SECONDS == settings_sitewide.CACHE_TTL
    settings.CACHE_MIDDLEWARE_SECONDS = settings.CACHE_TTL
    settings.CACHE_MIDDLEWARE_KEY_PREFIX = settings_sitewide.CACHE_MIDDLEWARE_KEY_PREFIX
    assert settings.CACHE_MIDDLEWARE_KEY_PREFIX == "sitewide"

    from django.test import Client

    site.client = Client()  # picks up the new middleware
    first = site.get("/")  # the view without a decorator is now cached too
    assert site.calls == 1
    second = site.get("/")
    assert site.calls == 1 and second.content == first.content
    assert "max-age=2" in second["Cache-Control"]
    # the middleware stored the page under its key prefix
    request = RequestFactory().get("/")
    key = get_cache_key(request, key_prefix="sitewide", cache=cache)
    assert key is not None and "sitewide" in key
    assert cache.get(key) is not None
    assert get_cache_key(request, key_prefix="other", cache=cache) is None
    site.wait_for_expiry(settings.CACHE_MIDDLEWARE_SECONDS)
    site.get("/")
    assert site.calls == 2


def test_template_fragment_cache(site):
    Product.objects.create(name="Teapot", price=Decimal("12.50"))
    with CaptureQueriesContext(connection) as queries:
        first = site.get("/fragment/")
    assert b"Teapot: 12.50" in first.content
    assert site.calls == 1 and len(queries) == 1
    fragment_key = make_template_fragment_key("object_list")
    assert "Teapot" in cache.get(fragment_key)
    with CaptureQueriesContext(connection) as queries:
        second = site.get("/fragment/")
    assert second.content == first.content
    assert site.calls == 1 and len(queries) == 0, "fragment came from the cache"
    # new data does not show until the fragment goes (its TTL is 500 s) ...
    Product.objects.create(name="Kettle", price=Decimal("30.00"))
    assert b"Kettle" not in site.get("/fragment/").content
    # ... or is deleted by its key
    assert cache.delete(fragment_key) is True
    third = site.get("/fragment/")
    assert b"Kettle: 30.00" in third.content and site.calls == 2


def test_low_level_cache_invalidated_by_signals(site):
    teapot = Product.objects.create(name="Teapot", price=Decimal("12.50"))
    assert cache.get(PRODUCTS_CACHE_KEY) is None
    page = site.get("/products/")
    assert b"Teapot: 12.50" in page.content and site.calls == 1
    cached = cache.get(PRODUCTS_CACHE_KEY)
    assert [p.name for p in cached] == ["Teapot"] and isinstance(cached[0], Product)

    with CaptureQueriesContext(connection) as queries:
        site.get("/products/")
    assert site.calls == 1 and len(queries) == 0

    # post_save on create
    Product.objects.create(name="Kettle", price=Decimal("30.00"))
    assert cache.get(PRODUCTS_CACHE_KEY) is None
    page = site.get("/products/")
    assert b"Kettle: 30.00" in page.content and site.calls == 2

    # post_save on update
    teapot.price = Decimal("9.99")
    teapot.save()
    assert cache.get(PRODUCTS_CACHE_KEY) is None
    page = site.get("/products/")
    assert b"Teapot: 9.99" in page.content and site.calls == 3
    site.get("/products/")
    assert site.calls == 3

    # post_delete
    teapot.delete()
    assert cache.get(PRODUCTS_CACHE_KEY) is None
    page = site.get("/products/")
    assert b"Teapot" not in page.content and b"Kettle" in page.content and site.calls == 4


@pytest.mark.slow
def test_low_level_cache_expires(site):
    Product.objects.create(name="Teapot", price=Decimal("12.50"))
    site.get("/products/")
    site.get("/products/")
    assert site.calls == 1
    site.wait_for_expiry()
    site.get("/products/")
    assert site.calls == 2


@pytest.mark.slow
def test_tutorial_timings(site, settings, upstream):
    """The tutorial's observation: ~2 s for the first request to the cached
    view, almost nothing for the second."""
    settings.UPSTREAM_URL = upstream.url(2)
    started = time.monotonic()
    site.get("/cached/")
    first = time.monotonic() - started
    started = time.monotonic()
    site.get("/cached/")
    second = time.monotonic() - started
    assert first >= 2.0
    assert second < 0.5
    assert site.calls == 1
