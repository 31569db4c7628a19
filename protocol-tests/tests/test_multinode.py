"""Client-side sharding over three nodes: pymemcache's HashClient, and the
Django site with three LOCATIONs. Keys must spread over the nodes, losing a
node must cost only that node's keys, and a node restarted on the same port
must be used again."""

from __future__ import annotations

import pytest
from pymemcache.client.hash import HashClient

from multinode import Cluster, curr_items, node_of, wait_until

KEYS = [f"user:{i}:profile" for i in range(600)]

# Keep serving when a node is down: errors become misses (ignore_exc), a
# node failing twice 0.2 s apart is taken off the hash ring, and it is tried
# again after 1 s, so a restarted node rejoins within the test.
FAILOVER = {"ignore_exc": True, "retry_attempts": 1, "retry_timeout": 0.2, "dead_timeout": 1}


@pytest.fixture
def cluster(target):
    c = Cluster(target).start()
    yield c
    c.stop()


def assert_spread(counts: list[int], total: int) -> None:
    assert sum(counts) == total, counts
    for n in counts:
        # an even share is a third; rendezvous hashing on 600 keys stays
        # well inside 20%..47%
        assert 0.20 * total < n < 0.47 * total, counts


def test_hashclient_spreads_and_survives_a_node(cluster, record_property):
    client = HashClient(cluster.addresses, connect_timeout=1, timeout=2, default_noreply=False, **FAILOVER)
    for key in KEYS:
        assert client.set(key, key.encode()) is True
    counts = curr_items(cluster.nodes)
    record_property("items_per_node", counts)
    print("items per node:", counts)
    assert_spread(counts, len(KEYS))
    got = client.get_many(KEYS)
    assert len(got) == len(KEYS)

    owner = {key: node_of(cluster.nodes, key) for key in KEYS}
    on_victim = [k for k in KEYS if owner[k] == 1]
    assert len(on_victim) == counts[1]

    cluster.kill(1)
    # single gets: every surviving node's key still hits, the dead node's
    # keys miss (no exception reaches the caller)
    lost = [k for k in KEYS if client.get(k) is None]
    print("lost after kill:", len(lost), "of", len(KEYS))
    assert sorted(lost) == sorted(on_victim)
    # the dead node is now off the ring: multi-get and sets keep working,
    # its keys are re-homed on the survivors
    got = client.get_many(KEYS)
    assert set(got) == set(KEYS) - set(on_victim)
    # (while the client probes the dead node again every dead_timeout, an
    # operation on its keys can miss or fail for a moment: retry briefly)
    for key in on_victim[:50]:
        wait_until(lambda: client.set(key, b"rehomed"), timeout=5, what=f"set {key}")
        wait_until(lambda: client.get(key) == b"rehomed", timeout=5, what=f"get {key}")
    assert sum(curr_items([cluster.nodes[0], cluster.nodes[2]])) == len(KEYS) - len(on_victim) + 50

    node = cluster.restart(1)
    assert curr_items([node]) == [0]

    def refilled():
        for key in KEYS[:100]:
            client.set(key, b"again")
        return curr_items([node])[0] > 0

    # the client tries the node again after dead_timeout (1 s)
    wait_until(refilled, timeout=10, what="the restarted node to receive sets", interval=0.2)
    new_keys = [f"after-restart:{i}" for i in range(300)]
    before = curr_items(cluster.nodes)
    for key in new_keys:
        assert client.set(key, b"x") is True
    after = curr_items(cluster.nodes)
    gained = [a - b for a, b in zip(after, before)]
    print("new keys per node after restart:", gained)
    assert all(g > 0.2 * len(new_keys) for g in gained), gained
    assert client.get_many(new_keys) == {k: b"x" for k in new_keys}
    client.close()


# --- the Django site with three LOCATIONs ----------------------------------

DJANGO_OPTIONS = {"connect_timeout": 1, "timeout": 2, **FAILOVER}


@pytest.fixture
def sharded_site(cluster, settings, upstream, db):
    from django.core.cache import cache
    from django.test import Client

    from support.upstream import FAST_DELAY

    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache",
            "LOCATION": [n.hostport for n in cluster.nodes],
            "OPTIONS": DJANGO_OPTIONS,
        }
    }
    settings.CACHE_TTL = 60  # the low-level API's TTL; cache_page keeps its 2 s
    settings.UPSTREAM_URL = upstream.url(FAST_DELAY)
    upstream.reset()
    yield Client()
    cache.close()


def get_ok(client, path):
    response = client.get(path)
    assert response.status_code == 200, (path, response.status_code, response.content[:300])
    return response


def test_django_site_over_three_nodes(cluster, sharded_site, upstream):
    from decimal import Decimal

    from django.core.cache import cache

    from apicalls.models import Product

    site = sharded_site
    Product.objects.create(name="Teapot", price=Decimal("12.50"))
    # cache_page and the low-level API work over the pool
    first = get_ok(site, "/cached/")
    assert get_ok(site, "/cached/").content == first.content and upstream.calls == 1
    assert b"Teapot: 12.50" in get_ok(site, "/products/").content
    get_ok(site, "/products/")
    assert upstream.calls == 2

    keys = [f"item:{i}" for i in range(600)]
    before = curr_items(cluster.nodes)
    assert cache.set_many({k: i for i, k in enumerate(keys)}, timeout=None) == []
    gained = [a - b for a, b in zip(curr_items(cluster.nodes), before)]
    print("django keys per node:", gained)
    assert_spread(gained, len(keys))
    owner = {k: node_of(cluster.nodes, cache.make_key(k)) for k in keys}
    on_victim = {k for k in keys if owner[k] == 1}
    assert len(on_victim) == gained[1]

    cluster.kill(1)
    # only the dead node's share is lost; nothing raises
    lost = {k for k in keys if cache.get(k) is None}
    print("django keys lost after kill:", len(lost), "of", len(keys))
    assert lost == on_victim
    assert set(cache.get_many(keys)) == set(keys) - on_victim
    # the site keeps serving, and keeps caching on the surviving nodes
    # (a page with a key on the dead node may render twice: every
    # dead_timeout the client tries that node again, and for retry_timeout
    # its keys miss)
    for path in ["/", "/products/", "/fragment/"]:
        get_ok(site, path)
    calls = upstream.calls
    pages = [f"/cached/?after-kill={i}" for i in range(10)]
    for path in pages:
        get_ok(site, path)
        get_ok(site, path)
    rendered = upstream.calls - calls
    print("renders for 10 pages x 2 requests with a node down:", rendered)
    assert 10 <= rendered <= 15, "most repeats should come from the cache"

    node = cluster.restart(1)

    def refilled():
        cache.set_many({k: "again" for k in keys[:60]}, timeout=None)
        return curr_items([node])[0] > 0

    wait_until(refilled, timeout=10, what="the restarted node to receive Django's sets", interval=0.2)
    get_ok(site, "/products/")
    assert cache.get_many(keys[:60]) == {k: "again" for k in keys[:60]}


def test_django_pylibmc_over_three_nodes(cluster, settings):
    """PyLibMCCache over three nodes (ketama). Unlike the pymemcache setup
    above, Django passes libmemcached's errors through: with a node down,
    reads of the other nodes' keys still hit, but each key that lives on
    the dead node raises (libmemcached 1.1 disables the node until its retry
    timeout instead of rehashing its keys), so a site on PyLibMCCache needs
    its own error handling to survive a lost node."""
    import pylibmc
    from django.core.cache import cache

    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.memcached.PyLibMCCache",
            "LOCATION": [n.hostport for n in cluster.nodes],
            "OPTIONS": {
                "binary": False,
                "behaviors": {
                    "ketama": True,
                    "remove_failed": 1,
                    "retry_timeout": 1,
                    "dead_timeout": 1,
                    "connect_timeout": 1000,
                    "_poll_timeout": 2000,
                },
            },
        }
    }
    keys = [f"item:{i}" for i in range(600)]
    assert cache.set_many({k: i for i, k in enumerate(keys)}, timeout=None) == []
    counts = curr_items(cluster.nodes)
    print("pylibmc keys per node:", counts)
    assert_spread(counts, len(keys))
    on_victim = {k for k in keys if node_of(cluster.nodes, cache.make_key(k)) == 1}

    cluster.kill(1)
    failed = set()
    for i, k in enumerate(keys):
        try:
            assert cache.get(k) == i
        except pylibmc.Error:
            failed.add(k)
    print("pylibmc keys failing after kill:", len(failed), "of", len(keys))
    assert failed == on_victim

    node = cluster.restart(1)
    victim = sorted(on_victim)[:50]

    def refilled():
        try:
            cache.set_many({k: "again" for k in victim}, timeout=None)
        except pylibmc.Error:
            return False
        return curr_items([node])[0] == len(victim)

    wait_until(refilled, timeout=10, what="the restarted node to take pylibmc's sets", interval=0.2)
    assert cache.get_many(victim) == {k: "again" for k in victim}
    cache.close()
