//! The recency order of a shard: a doubly linked list threaded through the
//! shard's slots by index, so that linking, unlinking and moving to the front
//! are O(1) and cost no allocation.
//!
//! Links are `u32` slot indices. The top four bits of `prev` are lent to the
//! slot for its per-item flags (see `shard.rs`), which keeps a slot at 48
//! bytes: a shard therefore holds at most [`MAX_SLOTS`] items (2^28 - 1, far
//! beyond what any memory limit lets one shard hold).

/// "No slot": the end of a list, or a slot that is in no list.
pub const NIL: u32 = INDEX_MASK;

/// The most slots one shard may have; slot indices are below this.
pub const MAX_SLOTS: u32 = NIL;

const INDEX_MASK: u32 = (1 << BITS_SHIFT) - 1;
const BITS_SHIFT: u32 = 28;

/// The links of one slot, plus four bits of flags that ride along in `prev`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Links {
    prev: u32,
    next: u32,
}

impl Links {
    /// In no list, no flags.
    pub const fn detached() -> Self {
        Links {
            prev: NIL,
            next: NIL,
        }
    }

    pub fn prev(&self) -> u32 {
        self.prev & INDEX_MASK
    }

    pub fn next(&self) -> u32 {
        self.next
    }

    fn set_prev(&mut self, prev: u32) {
        debug_assert!(prev <= NIL);
        self.prev = (self.prev & !INDEX_MASK) | prev;
    }

    /// Also used by the shard to chain free slots.
    pub fn set_next(&mut self, next: u32) {
        debug_assert!(next <= NIL);
        self.next = next;
    }

    /// The four flag bits.
    pub fn flags(&self) -> u8 {
        (self.prev >> BITS_SHIFT) as u8
    }

    pub fn has(&self, flag: u8) -> bool {
        self.flags() & flag != 0
    }

    pub fn set(&mut self, flag: u8) {
        debug_assert!(flag < 16);
        self.prev |= (flag as u32) << BITS_SHIFT;
    }

    pub fn clear(&mut self, flag: u8) {
        debug_assert!(flag < 16);
        self.prev &= !((flag as u32) << BITS_SHIFT);
    }
}

/// Whatever holds the slots a [`List`] runs through.
pub trait Nodes {
    fn links(&self, i: u32) -> &Links;
    fn links_mut(&mut self, i: u32) -> &mut Links;
}

/// Head is the most recently used end, tail the eviction end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct List {
    head: u32,
    tail: u32,
}

impl Default for List {
    fn default() -> Self {
        Self::new()
    }
}

impl List {
    pub const fn new() -> Self {
        List {
            head: NIL,
            tail: NIL,
        }
    }

    pub fn head(&self) -> Option<u32> {
        (self.head != NIL).then_some(self.head)
    }

    pub fn tail(&self) -> Option<u32> {
        (self.tail != NIL).then_some(self.tail)
    }

    /// The slot after `i` towards the head.
    pub fn newer<N: Nodes + ?Sized>(&self, nodes: &N, i: u32) -> Option<u32> {
        let p = nodes.links(i).prev();
        (p != NIL).then_some(p)
    }

    /// Links a slot that is in no list at the head.
    pub fn push_front<N: Nodes + ?Sized>(&mut self, nodes: &mut N, i: u32) {
        let old = self.head;
        let l = nodes.links_mut(i);
        l.set_prev(NIL);
        l.set_next(old);
        if old == NIL {
            self.tail = i;
        } else {
            nodes.links_mut(old).set_prev(i);
        }
        self.head = i;
    }

    /// Takes a slot out of the list; its flags stay.
    pub fn unlink<N: Nodes + ?Sized>(&mut self, nodes: &mut N, i: u32) {
        let l = *nodes.links(i);
        let (prev, next) = (l.prev(), l.next());
        if prev == NIL {
            self.head = next;
        } else {
            nodes.links_mut(prev).set_next(next);
        }
        if next == NIL {
            self.tail = prev;
        } else {
            nodes.links_mut(next).set_prev(prev);
        }
        let l = nodes.links_mut(i);
        l.set_prev(NIL);
        l.set_next(NIL);
    }

    pub fn move_to_front<N: Nodes + ?Sized>(&mut self, nodes: &mut N, i: u32) {
        if self.head != i {
            self.unlink(nodes, i);
            self.push_front(nodes, i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Nodes for Vec<Links> {
        fn links(&self, i: u32) -> &Links {
            &self[i as usize]
        }
        fn links_mut(&mut self, i: u32) -> &mut Links {
            &mut self[i as usize]
        }
    }

    fn order(list: &List, nodes: &[Links]) -> Vec<u32> {
        let mut out = Vec::new();
        let mut i = list.head;
        while i != NIL {
            out.push(i);
            i = nodes[i as usize].next();
        }
        // The backward walk must agree.
        let mut back = Vec::new();
        let mut i = list.tail;
        while i != NIL {
            back.push(i);
            i = nodes[i as usize].prev();
        }
        back.reverse();
        assert_eq!(out, back);
        out
    }

    #[test]
    fn push_unlink_move() {
        let mut nodes = vec![Links::detached(); 4];
        let mut l = List::new();
        assert_eq!(l.tail(), None);
        for i in 0..4 {
            l.push_front(&mut nodes, i);
        }
        assert_eq!(order(&l, &nodes), [3, 2, 1, 0]);
        l.move_to_front(&mut nodes, 0);
        assert_eq!(order(&l, &nodes), [0, 3, 2, 1]);
        l.unlink(&mut nodes, 2);
        assert_eq!(order(&l, &nodes), [0, 3, 1]);
        l.unlink(&mut nodes, 0);
        l.unlink(&mut nodes, 1);
        assert_eq!(order(&l, &nodes), [3]);
        assert_eq!((l.head(), l.tail()), (Some(3), Some(3)));
        l.unlink(&mut nodes, 3);
        assert_eq!((l.head(), l.tail()), (None, None));
    }

    #[test]
    fn flags_survive_relinking() {
        let mut nodes = vec![Links::detached(); 2];
        let mut l = List::new();
        nodes[0].set(0b1010);
        l.push_front(&mut nodes, 0);
        l.push_front(&mut nodes, 1);
        l.move_to_front(&mut nodes, 0);
        assert_eq!(nodes[0].flags(), 0b1010);
        assert_eq!(nodes[0].prev(), NIL);
        assert_eq!(l.newer(&nodes, 1), Some(0));
        nodes[0].clear(0b0010);
        assert!(nodes[0].has(0b1000) && !nodes[0].has(0b0010));
        l.unlink(&mut nodes, 0);
        assert_eq!(nodes[0].flags(), 0b1000);
        assert_eq!(order(&l, &nodes), [1]);
    }
}
