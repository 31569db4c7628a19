"""Django's cache API on PyMemcacheCache and PyLibMCCache, as on memcached."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest
from django.core.cache.backends.base import InvalidCacheKey

MONTH = 30 * 24 * 3600


def test_set_get_add(django_cache):
    cache = django_cache
    assert cache.get("k") is None
    assert cache.get("k", "fallback") == "fallback"
    cache.set("k", {"nested": [1, 2.5, "three", Decimal("4.00")]})
    assert cache.get("k") == {"nested": [1, 2.5, "three", Decimal("4.00")]}
    assert cache.add("k", "other") is False
    assert cache.add("new", "value") is True
    assert cache.get("new") == "value"
    cache.set("none", None)
    sentinel = object()
    assert cache.get("none", sentinel) is None  # a stored None is not a miss


def test_get_or_set(django_cache):
    cache = django_cache
    calls = []

    def compute():
        calls.append(1)
        return "computed"

    assert cache.get_or_set("k", compute) == "computed"
    assert cache.get_or_set("k", compute) == "computed"
    assert len(calls) == 1
    assert cache.get_or_set("plain", 42) == 42


def test_get_many_set_many_delete_many(django_cache):
    cache = django_cache
    values = {f"key{i}": i for i in range(50)}
    assert cache.set_many(values) == []
    assert cache.get_many(list(values) + ["absent"]) == values
    cache.delete_many([f"key{i}" for i in range(25)])
    assert cache.get_many(list(values)) == {f"key{i}": i for i in range(25, 50)}


def test_delete_has_key(django_cache):
    cache = django_cache
    cache.set("k", 1)
    assert cache.has_key("k") is True
    assert "k" in cache
    assert cache.delete("k") is True
    assert cache.delete("k") is False
    assert cache.has_key("k") is False


def test_incr_decr(django_cache):
    cache = django_cache
    with pytest.raises(ValueError):
        cache.incr("missing")
    with pytest.raises(ValueError):
        cache.decr("missing")
    cache.set("n", 10)
    assert cache.incr("n") == 11
    assert cache.incr("n", 10) == 21
    assert cache.decr("n", 1) == 20
    assert cache.incr("n", -5) == 15
    assert cache.decr("n", 100) == 0  # memcached stops at zero
    assert cache.get("n") == 0


def test_versions(django_cache):
    cache = django_cache
    cache.set("k", "v1")
    cache.set("k", "v2", version=2)
    assert cache.get("k") == "v1" and cache.get("k", version=2) == "v2"
    assert cache.incr_version("k") == 2  # moves v1 to version 2
    assert cache.get("k") is None and cache.get("k", version=2) == "v1"


def test_touch(django_cache):
    cache = django_cache
    cache.set("k", "v", 100)
    assert cache.touch("k", 200) is True
    assert cache.touch("missing", 200) is False


def test_clear(django_cache):
    cache = django_cache
    cache.set_many({"a": 1, "b": 2})
    cache.clear()
    assert cache.get_many(["a", "b"]) == {}


def test_timeout_zero_expires_at_once(django_cache, django_backend):
    cache = django_cache
    if django_backend == "pylibmc-binary":
        # Django sends timeout 0 as exptime -1. The binary protocol's
        # exptime is unsigned: memcached reads 0xffffffff, a time in 2106,
        # and keeps the item. ferrocache does as memcached does.
        cache.set("k", "v", timeout=0)
        assert cache.get("k") == "v"
        return
    cache.set("k", "v", timeout=0)
    assert cache.get("k") is None
    assert cache.add("k", "v", timeout=0) is True
    assert cache.get("k") is None
    cache.set("k", "v", timeout=-1)
    assert cache.get("k") is None


def test_timeout_none_and_over_thirty_days(django_cache):
    """None means forever; more than 30 days becomes a unix timestamp."""
    cache = django_cache
    cache.set("forever", "v", timeout=None)
    cache.set("month-plus", "v", timeout=MONTH + 60)
    cache.set("year", "v", timeout=365 * 24 * 3600)
    cache.set("exactly-month", "v", timeout=MONTH)
    assert cache.get_many(["forever", "month-plus", "year", "exactly-month"]) == {
        "forever": "v", "month-plus": "v", "year": "v", "exactly-month": "v",
    }
    assert cache.touch("year", None) is True
    assert cache.touch("forever", MONTH + 3600) is True
    assert cache.get_many(["forever", "year"]) == {"forever": "v", "year": "v"}


@pytest.mark.slow
def test_timeouts_expire(django_cache):
    cache = django_cache
    cache.set("short", "v", timeout=1)
    cache.set("forever", "v", timeout=None)
    cache.set("touched", "v", timeout=1)
    cache.touch("touched", 100)
    cache.set_many({"m1": 1, "m2": 2}, timeout=1)
    time.sleep(2.1)
    assert cache.get_many(["short", "forever", "touched", "m1", "m2"]) == {"forever": "v", "touched": "v"}


def test_keys_and_values_limits(django_cache):
    cache = django_cache
    cache.set("ключ", "значение")  # Django keys may be unicode
    assert cache.get("ключ") == "значение"
    with pytest.raises(InvalidCacheKey):
        cache.set("k" * 251, "v")
    with pytest.raises(InvalidCacheKey):
        cache.set("with space", "v")
    cache.set("big", b"old")
    with pytest.raises(Exception) as raised:  # the server's refusal surfaces
        cache.set("big", b"x" * (1024 * 1024 + 10))
    assert type(raised.value).__name__ in ("MemcacheServerError", "TooBig")
    assert cache.get("big") is None  # and the stale value is gone
    cache.set("almost", b"y" * (1000 * 1000))
    assert cache.get("almost") == b"y" * (1000 * 1000)
