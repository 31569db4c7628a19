"""meta-memcache, a client that speaks only the meta protocol, unchanged.

Its high-level API sits on mg/ms/md/ma flags that the text clients never
send: vivify-on-miss (N) for leases, recache (R) and invalidate (I) with the
W/Z/X answer flags for stale-while-revalidate, and ma with N/J for counters
that create themselves. Every assertion here also holds on memcached 1.6.18.
"""

from __future__ import annotations

import random
import threading

import pytest
from meta_memcache import (
    CacheClient,
    Key,
    LeasePolicy,
    MemcacheServerError,
    RecachePolicy,
    RequestFlags,
    ServerAddress,
    StalePolicy,
    Value,
    connection_pool_factory_builder,
)


def make_client(server, **pool_kwargs):
    pool_kwargs.setdefault("connection_timeout", 5)
    pool_kwargs.setdefault("recv_timeout", 5)
    host, port = server.address
    return CacheClient.cache_client_from_servers(
        servers=[ServerAddress(host=host, port=port)],
        connection_pool_factory_fn=connection_pool_factory_builder(**pool_kwargs),
    )


@pytest.fixture
def client(server):
    return make_client(server)


def raw_get(client, key: str) -> Value | None:
    """mg with the flags the client itself asks for, to see W/Z/X and TTL."""
    result = client.meta_get(
        Key(key),
        flags=RequestFlags(
            return_value=True,
            return_ttl=True,
            return_client_flag=True,
            return_cas_token=True,
        ),
    )
    return result if isinstance(result, Value) else None


# -- plain commands -------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "text",
        "ünïcode ✓",
        b"\x00\xffbinary\r\nEND\r\n",
        b"",
        0,
        -17,
        2**62,
        {"a": [1, 2.5, None], "b": ("t", True)},
        ["x" * 500],  # pickled then zlib-compressed (over 128 bytes)
        "y" * 10_000,  # a compressed str
    ],
    ids=lambda v: type(v).__name__,
)
def test_set_get_round_trip(client, value):
    assert client.set("k", value, ttl=60) is True
    got = client.get("k")
    assert got == value and type(got) is type(value)


def test_get_missing(client):
    assert client.get("missing") is None
    assert client.get_cas("missing") == (None, None)
    assert client.get_typed("missing", str) is None


def test_get_typed(client):
    client.set("n", 5, ttl=60)
    assert client.get_typed("n", int) == 5
    assert client.get_typed("n", str) is None
    with pytest.raises(ValueError):
        client.get_typed("n", str, error_on_type_mismatch=True)


def test_large_value(client):
    # incompressible, so it crosses the wire at full size over many reads;
    # kept at 100 kB as the client reassembles big replies slowly (~25 s
    # for 1 MB against either server)
    blob = random.Random(1).randbytes(100_000)
    assert client.set("big", blob, ttl=60) is True
    assert client.get("big") == blob


def test_multi_get(client):
    values = {f"key{i}": f"value{i}" for i in range(50)}
    values["int"] = 42
    values["bytes"] = b"raw"
    for k, v in values.items():
        assert client.set(k, v, ttl=60)
    got = client.multi_get([*values, "absent1", "absent2"])
    assert got == {Key(k): v for k, v in values.items()} | {
        Key("absent1"): None,
        Key("absent2"): None,
    }
    with_cas = client.multi_get_cas(["key1", "absent1"])
    value, cas = with_cas[Key("key1")]
    assert value == "value1" and isinstance(cas, int) and cas > 0
    assert with_cas[Key("absent1")] == (None, None)


def test_delete(client):
    client.set("k", "v", ttl=60)
    assert client.delete("k") is True
    assert client.get("k") is None
    assert client.delete("k") is False
    assert client.invalidate("k") is True  # a miss counts as invalidated
    client.set("k", "v", ttl=60)
    assert client.invalidate("k") is True
    assert client.get("k") is None


def test_set_modes_and_cas(client):
    from meta_memcache import SetMode

    assert client.set("k", "a", ttl=60, set_mode=SetMode.ADD) is True
    assert client.set("k", "b", ttl=60, set_mode=SetMode.ADD) is False
    assert client.set("absent", "b", ttl=60, set_mode=SetMode.REPLACE) is False
    assert client.set("k", "c", ttl=60, set_mode=SetMode.REPLACE) is True
    assert client.refill("k", "d", ttl=60) is False  # refill is ADD
    assert client.refill("fresh", "d", ttl=60) is True

    value, cas = client.get_cas("k")
    assert value == "c"
    new_cas = client.set_cas("k", "e", ttl=60, cas_token=cas)
    assert isinstance(new_cas, int) and new_cas != cas
    assert client.set("k", "f", ttl=60, cas_token=cas) is False  # stale token
    assert client.get_cas("k") == ("e", new_cas)
    assert client.delete("k", cas_token=cas) is False
    assert client.delete("k", cas_token=new_cas) is True


def test_touch(client):
    client.set("k", "v", ttl=1000)
    assert raw_get(client, "k").flags.ttl in (999, 1000)
    assert client.touch("k", ttl=5000) is True
    assert raw_get(client, "k").flags.ttl in (4999, 5000)
    assert client.touch("missing", ttl=10) is False
    # get with touch_ttl is mg T: value and new TTL in one round trip
    assert client.get("k", touch_ttl=300) == "v"
    assert raw_get(client, "k").flags.ttl in (299, 300)
    assert client.get("missing", touch_ttl=300) is None


def test_delta(client):
    assert client.delta("counter", 1) is False  # miss, nothing created
    assert client.get("counter") is None
    assert client.delta_and_get("counter", 1) is None

    assert client.delta_initialize("counter", 5, initial_value=10, initial_ttl=60) is True
    # created with the initial value, delta not applied; ma stores digits
    # with client flags 0, which the serializer reads back as a str
    assert client.get("counter") == "10"
    assert client.delta("counter", 5) is True
    assert client.delta_and_get("counter", 3) == 18
    assert client.delta_and_get("counter", -8) == 10
    assert client.delta_and_get("counter", -100) == 0  # decr stops at 0
    assert client.delta_initialize_and_get("counter", 2, initial_value=7, initial_ttl=60) == 2
    assert client.delta_initialize_and_get("new", 2, initial_value=7, initial_ttl=60) == 7
    assert client.delta_initialize_and_get("new", -2, initial_value=7, initial_ttl=60) == 5
    assert client.get("new") == "5"
    assert client.delta_and_get("new", 2**64 - 5) == 0  # 64-bit wrap

    client.set("text", "abc", ttl=60)
    with pytest.raises(MemcacheServerError):  # CLIENT_ERROR non-numeric value
        client.delta("text", 1)
    assert client.get("text") == "abc"

    value, cas = client.get_cas("new")
    assert client.delta("new", 1, cas_token=cas + 1) is False
    assert client.delta("new", 1, cas_token=cas) is True
    assert client.get("new") == "1"


def test_delta_refresh_ttl(client):
    client.delta_initialize("c", 1, initial_value=0, initial_ttl=100)
    assert raw_get(client, "c").flags.ttl in (99, 100)
    assert client.delta("c", 1, refresh_ttl=2000) is True
    assert raw_get(client, "c").flags.ttl in (1999, 2000)


# -- stale-while-revalidate: md I, then W to one caller, Z + X to the rest --

STALE = StalePolicy(mark_stale_on_deletion_ttl=30)


def test_invalidate_marks_stale_one_winner(client):
    client.set("page", "old render", ttl=600)
    _, cas_before = client.get_cas("page")
    assert client.invalidate("page", stale_policy=STALE) is True

    # raw view of what the server hands out: W X to the first, Z X after
    first = raw_get(client, "page")
    second = raw_get(client, "page")
    assert first.flags.stale is True and first.flags.win is True
    assert second.flags.stale is True and second.flags.win is False
    assert first.value == second.value == "old render"
    assert first.flags.ttl in (29, 30)  # T30 from the policy
    assert first.flags.cas_token != cas_before  # md I bumps the CAS

    # the high-level API: later callers keep serving the stale value
    assert client.get("page") == "old render"
    assert client.multi_get(["page"]) == {Key("page"): "old render"}


def test_invalidate_high_level_get_then_recache(client):
    client.set("page", "old render", ttl=600)
    client.invalidate("page", stale_policy=STALE)

    value, win_cas = client.get_cas("page")  # the winner is told it missed
    assert value is None and win_cas is not None
    assert client.get("page") == "old render"  # everyone else: stale value
    assert client.get("page") == "old render"

    assert client.set("page", "new render", ttl=600, cas_token=win_cas) is True
    fresh = raw_get(client, "page")
    assert fresh.value == "new render"
    assert fresh.flags.stale is False and fresh.flags.win is None
    assert client.get("page") == "new render"


def test_invalidate_concurrent_single_winner(server):
    clients = [make_client(server) for _ in range(8)]
    clients[0].set("hot", {"v": 1}, ttl=600)
    clients[0].invalidate("hot", stale_policy=STALE)

    barrier = threading.Barrier(len(clients))
    results: list = [None] * len(clients)

    def worker(i):
        barrier.wait()
        results[i] = clients[i].get("hot")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(clients))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results.count(None) == 1
    assert results.count({"v": 1}) == len(clients) - 1


def test_invalidate_without_policy_deletes(client):
    client.set("k", "v", ttl=600)
    assert client.invalidate("k") is True
    assert raw_get(client, "k") is None
    assert client.get("k") is None


def test_delete_with_stale_policy(client):
    client.set("k", "v", ttl=600)
    assert client.delete("k", stale_policy=STALE) is True
    assert raw_get(client, "k").flags.stale is True
    assert client.delete("missing", stale_policy=STALE) is False


def test_stale_set_on_cas_mismatch(client):
    """ms I: a write with an old CAS is kept, but as stale (recache later)."""
    policy = StalePolicy(mark_stale_on_deletion_ttl=30, mark_stale_on_cas_mismatch=True)
    client.set("k", "v1", ttl=600)
    _, old_cas = client.get_cas("k")
    client.invalidate("k", stale_policy=policy)  # bumps the CAS

    assert client.set("k", "v2", ttl=600, cas_token=old_cas, stale_policy=policy) is True
    item = raw_get(client, "k")
    assert item.value == "v2" and item.flags.stale is True
    # without the policy the same late write is refused
    client.set("j", "v1", ttl=600)
    _, old_j = client.get_cas("j")
    client.invalidate("j", stale_policy=policy)
    assert client.set("j", "v2", ttl=600, cas_token=old_j) is False
    assert raw_get(client, "j").value == "v1"


# -- leases: get_or_lease is mg N; one winner, the rest wait ---------------

LEASE = LeasePolicy(ttl=30, miss_retries=3, miss_retry_wait=0.01, miss_max_retry_wait=0.05)


def test_get_or_lease_winner_and_loser(client):
    winner_waits: list[float] = []
    loser_waits: list[float] = []

    value, lease_cas = client.get_or_lease_cas("rows", LEASE, lease_wait_fn=winner_waits.append)
    assert value is None and lease_cas is not None and winner_waits == []  # won: miss, no waiting

    placeholder = raw_get(client, "rows")
    assert placeholder is not None and placeholder.flags.win is False  # Z: lease taken
    assert placeholder.flags.ttl in (29, 30)

    # a second caller loses, retries miss_retries times, then gives up as a miss
    assert client.get_or_lease("rows", LEASE, lease_wait_fn=loser_waits.append) is None
    assert len(loser_waits) == LEASE.miss_retries - 1

    # the winner fills with the CAS of the placeholder; everyone sees it
    assert client.set("rows", ["r1", "r2"], ttl=600, cas_token=lease_cas) is True
    later_waits: list[float] = []
    assert client.get_or_lease("rows", LEASE, lease_wait_fn=later_waits.append) == ["r1", "r2"]
    assert later_waits == []


def test_get_or_lease_loser_sees_fill(server, client):
    _, lease_cas = client.get_or_lease_cas("rows", LEASE, lease_wait_fn=lambda s: None)
    other = make_client(server)
    waits: list[float] = []

    def fill_while_waiting(seconds):
        waits.append(seconds)
        if len(waits) == 1:
            assert other.set("rows", "filled", ttl=600, cas_token=lease_cas) is True

    assert client.get_or_lease("rows", LEASE, lease_wait_fn=fill_while_waiting) == "filled"
    assert len(waits) == 1


def test_get_or_lease_hit(client):
    client.set("k", 7, ttl=600)
    assert client.get_or_lease("k", LEASE, lease_wait_fn=pytest.fail) == 7


def test_get_or_lease_concurrent_single_winner(server):
    clients = [make_client(server) for _ in range(8)]
    barrier = threading.Barrier(len(clients))
    results: list = [None] * len(clients)
    policy = LeasePolicy(ttl=30, miss_retries=1)  # no waiting at all

    def worker(i):
        barrier.wait()
        results[i] = clients[i].get_or_lease_cas("k", policy, lease_wait_fn=pytest.fail)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(clients))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert all(value is None for value, _ in results)
    # all got the same placeholder; only the winner knows it won, so check
    # through the server: exactly one W went out, the placeholder is now Z
    assert raw_get(clients[0], "k").flags.win is False
    assert len({cas for _, cas in results}) == 1


def test_get_or_lease_bad_policy(client):
    with pytest.raises(ValueError):
        client.get_or_lease("k", LeasePolicy(miss_retries=0))


# -- recache: mg R, one caller refreshes an item about to expire ------------


def test_recache_below_threshold_one_winner(client):
    client.set("k", "v", ttl=100)
    policy = RecachePolicy(ttl=200)  # remaining TTL 100 < 200
    assert client.get("k", recache_policy=policy) is None  # W: go refresh
    assert client.get("k", recache_policy=policy) == "v"  # Z: keep serving
    assert client.get("k", recache_policy=policy) == "v"
    assert client.get("k") == "v"  # without R: a plain hit

    item = raw_get(client, "k")
    assert item.flags.win is False and item.flags.stale is False

    value, cas = client.get_cas("k", recache_policy=policy)
    assert value == "v"
    assert client.set("k", "v2", ttl=1000, cas_token=cas) is True
    assert client.get("k", recache_policy=policy) == "v2"  # fresh, TTL above 200
    assert raw_get(client, "k").flags.win is None


def test_recache_above_threshold_no_winner(client):
    client.set("k", "v", ttl=1000)
    policy = RecachePolicy(ttl=30)
    for _ in range(3):
        assert client.get("k", recache_policy=policy) == "v"
    assert raw_get(client, "k").flags.win is None


def test_recache_multi_get(client):
    client.set("soon", "a", ttl=10)
    client.set("later", "b", ttl=1000)
    policy = RecachePolicy(ttl=60)
    first = client.multi_get(["soon", "later"], recache_policy=policy)
    second = client.multi_get(["soon", "later"], recache_policy=policy)
    assert first == {Key("soon"): None, Key("later"): "b"}
    assert second == {Key("soon"): "a", Key("later"): "b"}


def test_recache_concurrent_single_winner(server):
    clients = [make_client(server) for _ in range(8)]
    clients[0].set("k", "v", ttl=50)
    barrier = threading.Barrier(len(clients))
    results: list = [None] * len(clients)

    def worker(i):
        barrier.wait()
        results[i] = clients[i].get("k", recache_policy=RecachePolicy(ttl=100))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(clients))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results.count(None) == 1
    assert results.count("v") == len(clients) - 1


def test_recache_with_touch(client):
    client.set("k", "v", ttl=100)
    # mg R200 T5000: the touch is applied first, so the R check sees 5000
    # and nobody is asked to recache
    got = client.get("k", recache_policy=RecachePolicy(ttl=200), touch_ttl=5000)
    item = raw_get(client, "k")
    assert item.flags.ttl in (4999, 5000)
    assert got == "v" and item.flags.win is None
