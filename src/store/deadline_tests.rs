//! A deadline given to an item whose record has no field for one (it was
//! stored without a TTL): the record is written again with the field, and
//! nothing a client can see changes but the TTL (value, flags, CAS, the
//! fetched and stale marks, the item counts), also once eviction has moved
//! it, before or after.

use super::loc::Loc;
use super::tests::{check, cmd, gat, new_store};
use super::*;
use crate::item_rules::StoreMode::*;

const MB: usize = 1 << 20;

/// What a client sees of an item, read without bumping it: value, flags,
/// CAS, deadline, fetched.
fn seen(s: &Store, key: &[u8], now: u32) -> Option<(Vec<u8>, u32, u64, u32, bool)> {
    let info = s.peek(key, now)?;
    let req = GetRequest {
        bump: false,
        ..GetRequest::new(key)
    };
    let Lookup::Hit(h) = s.get(req, now) else {
        panic!("peeked but missed");
    };
    let v = h.value;
    Some((v.data.to_vec(), v.flags, v.cas, info.deadline, info.fetched))
}

/// Where the key's record is, and whether it has a deadline field.
fn record(s: &Store, key: &[u8]) -> (Loc, bool) {
    let (hash, si) = s.route(key).unwrap();
    let shard = s.lock(si);
    let loc = shard.find(key, hash).expect("stored");
    let field = shard.segs.get(loc.node()).mem().has_deadline(loc.offset());
    (loc, field)
}

/// A lookup as meta `mg` sends it, with `steps` and `u` as `!bump`.
fn mg(s: &Store, key: &[u8], steps: &[Step], bump: bool, now: u32) -> Hit {
    let req = GetRequest {
        bump,
        tokens: true,
        unlink_expired: false,
        steps,
        ..GetRequest::new(key)
    };
    match s.get(req, now) {
        Lookup::Hit(h) => h,
        other => panic!("expected a hit, got {other:?}"),
    }
}

fn filled(s: &Store, n: u32, now: u32) {
    for i in 0..n {
        let key = format!("other{i}");
        assert_eq!(
            cmd(s, Set, key.as_bytes(), 0, 0, &[1; 50], 0, now),
            StoreResult::Stored
        );
    }
}

#[test]
fn an_item_stored_without_a_ttl_has_no_deadline_field_and_one_with_has() {
    let s = new_store(16 * MB, true, true, 4);
    let now = 2;
    cmd(&s, Set, b"never", 0, 0, b"v", 0, now);
    cmd(&s, Set, b"soon", 0, now + 10, b"v", 0, now);
    assert!(!record(&s, b"never").1);
    assert!(record(&s, b"soon").1);
    // A large item has the field whatever its TTL.
    cmd(&s, Set, b"large", 0, 0, &[7; 100_000], 0, now);
    assert!(record(&s, b"large").1);
    check(&s);
}

#[test]
fn touch_gives_a_record_without_the_field_one_and_changes_nothing_else() {
    let s = new_store(16 * MB, true, true, 4);
    let now = 2;
    filled(&s, 100, now);
    cmd(&s, Set, b"k", 7, 0, b"value", 0, now);
    filled(&s, 100, now);
    let before = seen(&s, b"k", now).unwrap();
    let (old, field) = record(&s, b"k");
    assert!(!field);
    let st = s.stats();
    assert!(s.touch(b"k", now + 100, now));
    let (new, field) = record(&s, b"k");
    assert!(field && new != old, "written again with the field");
    // touch bumps the item, as memcached's does.
    let (value, flags, cas, deadline, fetched) = seen(&s, b"k", now).unwrap();
    assert_eq!((value, flags, cas), (before.0, before.1, before.2));
    assert_eq!((deadline, fetched), (now + 100, true));
    let after = s.stats();
    assert_eq!(
        (after.curr_items, after.total_items),
        (st.curr_items, st.total_items),
        "the same item, not a new one"
    );
    assert!(matches!(
        s.get(GetRequest::new(b"k"), now + 99),
        Lookup::Hit(_)
    ));
    assert_eq!(s.get(GetRequest::new(b"k"), now + 100), Lookup::Expired);
    check(&s);
}

#[test]
fn gat_and_mg_t_give_the_deadline_and_keep_value_flags_cas_and_marks() {
    let s = new_store(16 * MB, true, true, 4);
    let now = 2;
    cmd(&s, Set, b"g", 9, 0, b"gat", 0, now);
    let cas = seen(&s, b"g", now).unwrap().2;
    let v = match gat(&s, b"g", now + 50, now) {
        Lookup::Hit(h) => h.value,
        other => panic!("{other:?}"),
    };
    assert_eq!((&v.data[..], v.flags, v.cas), (&b"gat"[..], 9, cas));
    assert_eq!(
        seen(&s, b"g", now).unwrap(),
        (b"gat".to_vec(), 9, cas, now + 50, true)
    );

    // mg T with u: the deadline, not fetched.
    cmd(&s, Set, b"m", 0, 0, b"meta", 0, now);
    let cas = seen(&s, b"m", now).unwrap().2;
    let hit = mg(&s, b"m", &[Step::ReadTtl, Step::Ttl(now + 30)], false, now);
    assert_eq!(
        (hit.ttl_at_read, hit.touched, hit.value.cas),
        (0, true, cas)
    );
    assert!(record(&s, b"m").1);
    assert_eq!(
        seen(&s, b"m", now).unwrap(),
        (b"meta".to_vec(), 0, cas, now + 30, false)
    );
    let hit = mg(&s, b"m", &[Step::ReadTtl], true, now);
    assert_eq!((hit.ttl_at_read, hit.fetched), (now + 30, false));

    // A stale item whose token is out stays so.
    cmd(&s, Set, b"x", 0, 0, b"stale", 0, now);
    let req = DeleteRequest {
        invalidate: true,
        ..DeleteRequest::new(b"x")
    };
    assert_eq!(s.delete(req, now), DeleteResult::Invalidated);
    let first = mg(&s, b"x", &[], true, now);
    assert!(first.stale && first.won);
    assert!(!record(&s, b"x").1);
    let cas = first.value.cas;
    let touched = mg(&s, b"x", &[Step::Ttl(now + 40)], true, now);
    assert!(touched.stale && touched.token_sent && !touched.won);
    let again = mg(&s, b"x", &[Step::ReadTtl], true, now);
    assert!(again.stale && again.token_sent && !again.won);
    assert_eq!((again.value.cas, again.ttl_at_read), (cas, now + 40));
    check(&s);
}

#[test]
fn a_deadline_of_0_is_stored_where_the_record_is() {
    let s = new_store(16 * MB, true, true, 4);
    let now = 2;
    cmd(&s, Set, b"k", 0, now + 10, b"v", 0, now);
    let (at, field) = record(&s, b"k");
    assert!(field);
    assert!(s.touch(b"k", 0, now));
    assert_eq!(record(&s, b"k"), (at, true));
    assert_eq!(seen(&s, b"k", now).unwrap().3, 0);
    // And back: the field is there.
    assert!(s.touch(b"k", now + 20, now));
    assert_eq!(record(&s, b"k"), (at, true));
    check(&s);
}

#[test]
fn a_vivified_item_is_written_with_the_deadline_its_steps_give() {
    let s = new_store(16 * MB, true, true, 4);
    let now = 2;
    let req = GetRequest {
        vivify: true,
        tokens: true,
        steps: &[Step::ReadTtl, Step::Vivify(now + 30), Step::ReadTtl],
        ..GetRequest::new(b"n")
    };
    let Lookup::Hit(h) = s.get(req, now) else {
        panic!("vivify creates it");
    };
    assert!(h.created);
    assert_eq!(h.ttl_at_read, now + 30);
    assert!(record(&s, b"n").1);
    let req = GetRequest {
        vivify: true,
        steps: &[Step::ReadTtl],
        ..GetRequest::new(b"n0")
    };
    assert!(matches!(s.get(req, now), Lookup::Hit(_)));
    assert!(!record(&s, b"n0").1);
    check(&s);
}

#[test]
fn touched_items_keep_value_flags_cas_and_ttl_when_eviction_moves_them() {
    // One shard of 4 MiB: 64 KiB segments, small records share them.
    let s = new_store(4 * MB, true, true, 1);
    let now = 2;
    // Touched before eviction moves it, after, and touched back to 0.
    for k in ["before", "after", "zero"] {
        cmd(&s, Set, k.as_bytes(), 3, 0, k.as_bytes(), 0, now);
    }
    assert!(s.touch(b"before", now + 1000, now));
    assert!(s.touch(b"zero", now + 1000, now));
    assert!(s.touch(b"zero", 0, now));
    let want: Vec<_> = ["before", "after", "zero"]
        .iter()
        .map(|k| seen(&s, k.as_bytes(), now).unwrap())
        .collect();
    for i in 0..60_000 {
        let key = format!("k{i}");
        cmd(&s, Set, key.as_bytes(), 0, 0, &[1; 100], 0, now);
        if i % 1000 == 0 {
            // Read, so that eviction moves them rather than dropping them.
            for k in ["before", "after", "zero"] {
                assert!(matches!(
                    s.get(GetRequest::new(k.as_bytes()), now),
                    Lookup::Hit(_)
                ));
            }
        }
    }
    assert!(s.stats().evictions > 0 && s.lock(0).moves > 0);
    assert!(s.touch(b"after", now + 2000, now));
    let got: Vec<_> = ["before", "after", "zero"]
        .iter()
        .map(|k| seen(&s, k.as_bytes(), now).unwrap())
        .collect();
    assert_eq!(got[0], want[0]);
    assert_eq!(got[1], (want[1].0.clone(), 3, want[1].2, now + 2000, true));
    assert_eq!(got[2], want[2]);
    // Moved with a deadline of 0, a record leaves its field behind.
    assert!(!record(&s, b"zero").1);
    assert!(record(&s, b"before").1 && record(&s, b"after").1);
    assert_eq!(
        s.get(GetRequest::new(b"before"), now + 1000),
        Lookup::Expired
    );
    check(&s);
}

#[test]
fn without_room_for_the_field_a_touched_item_goes_as_if_evicted() {
    // No evictions (-M), one shard of 1 MiB: 16 KiB segments, shared.
    let s = new_store(MB, false, true, 1);
    let now = 2;
    let mut n = 0;
    while cmd(&s, Set, format!("k{n}").as_bytes(), 0, 0, &[1; 100], 0, now) == StoreResult::Stored {
        n += 1;
    }
    assert_eq!(s.stats().evictions, 0);
    assert!(s.touch(b"k1", now + 100, now), "found and touched");
    assert_eq!(s.get(GetRequest::new(b"k1"), now), Lookup::Miss);
    assert!(matches!(gat(&s, b"k2", now + 100, now), Lookup::Hit(_)));
    assert_eq!(s.get(GetRequest::new(b"k2"), now), Lookup::Miss);
    let st = s.stats();
    assert_eq!((st.evictions, st.curr_items), (2, n - 2));
    // A deadline of 0 needs no room.
    assert!(s.touch(b"k3", 0, now));
    assert!(matches!(s.get(GetRequest::new(b"k3"), now), Lookup::Hit(_)));
    check(&s);
}
