//! Where a record is, packed into the 32 bits a hash index entry holds: a
//! shared segment's id and an offset in it, or the id of a segment holding
//! one large record. It owns the id spaces of the two kinds of segment; it
//! knows nothing of what a record contains or how segments are kept.

/// Shared segments have node ids below this; records in them are located by
/// a 15-bit segment id and a 16-bit offset.
pub const SHARED_IDS: u32 = 1 << 15;
/// Locations with this bit set name a segment of their own.
pub const SOLO_BIT: u32 = 1 << 31;

/// Whether a segment id names a large record's own segment.
pub fn is_solo(node: u32) -> bool {
    node >= SHARED_IDS
}

/// Where a record is: a shared segment and an offset in it, or a segment
/// of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loc(pub u32);

impl Loc {
    pub fn shared(seg: u32, offset: usize) -> Loc {
        debug_assert!(seg < SHARED_IDS && offset <= u16::MAX as usize);
        Loc((seg << 16) | offset as u32)
    }

    pub fn solo(node: u32) -> Loc {
        debug_assert!(node >= SHARED_IDS);
        Loc(SOLO_BIT | node)
    }

    /// The record at `offset` of segment `node` (0 for one of its own).
    pub fn at(node: u32, offset: usize) -> Loc {
        if is_solo(node) {
            Loc::solo(node)
        } else {
            Loc::shared(node, offset)
        }
    }

    /// The segment's node id.
    pub fn node(self) -> u32 {
        if self.0 & SOLO_BIT != 0 {
            self.0 & !SOLO_BIT
        } else {
            self.0 >> 16
        }
    }

    pub fn offset(self) -> usize {
        if self.0 & SOLO_BIT != 0 {
            0
        } else {
            (self.0 & 0xffff) as usize
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_and_solo_locations_round_trip() {
        let l = Loc::at(SHARED_IDS - 1, u16::MAX as usize);
        assert_eq!((l.node(), l.offset()), (SHARED_IDS - 1, u16::MAX as usize));
        let l = Loc::at(SHARED_IDS + 7, 0);
        assert_eq!((l.node(), l.offset()), (SHARED_IDS + 7, 0));
        assert!(is_solo(l.node()) && !is_solo(0));
    }
}
