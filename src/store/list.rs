//! A doubly linked list threaded through a table by index: the age order
//! of a shard's segments, so that linking and unlinking are O(1) and cost
//! no allocation. Links are `u32` table indices; what the nodes hold it
//! does not know.

/// "No node": the end of a list, or a node that is in no list.
pub const NIL: u32 = u32::MAX;

/// The links of one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Links {
    prev: u32,
    next: u32,
}

impl Links {
    /// In no list.
    pub const fn detached() -> Self {
        Links {
            prev: NIL,
            next: NIL,
        }
    }

    pub fn prev(&self) -> u32 {
        self.prev
    }

    pub fn next(&self) -> u32 {
        self.next
    }

    fn set_prev(&mut self, prev: u32) {
        self.prev = prev;
    }

    /// Also used by the shard to chain free nodes.
    pub fn set_next(&mut self, next: u32) {
        self.next = next;
    }
}

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

    /// The node after `i` towards the head.
    pub fn newer<N: Nodes + ?Sized>(&self, nodes: &N, i: u32) -> Option<u32> {
        let p = nodes.links(i).prev();
        (p != NIL).then_some(p)
    }

    /// Links a node that is in no list at the head.
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

    /// Takes a node out of the list; its flags stay.
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
    fn push_and_unlink() {
        let mut nodes = vec![Links::detached(); 4];
        let mut l = List::new();
        assert_eq!(l.tail(), None);
        for i in 0..4 {
            l.push_front(&mut nodes, i);
        }
        assert_eq!(order(&l, &nodes), [3, 2, 1, 0]);
        assert_eq!(l.newer(&nodes, 1), Some(2));
        l.unlink(&mut nodes, 2);
        assert_eq!(order(&l, &nodes), [3, 1, 0]);
        l.unlink(&mut nodes, 0);
        l.unlink(&mut nodes, 1);
        assert_eq!(order(&l, &nodes), [3]);
        assert_eq!((l.head(), l.tail()), (Some(3), Some(3)));
        l.unlink(&mut nodes, 3);
        assert_eq!((l.head(), l.tail()), (None, None));
    }
}
