//! memcached's rules for items that both the protocol and the store apply,
//! kept apart from both so that neither imports the other: how a write
//! combines with an existing item ([`StoreMode`]), and how large an item may
//! be ([`Limits`]).

/// The limits the parser enforces, taken from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `-I`: the largest item, header included, as memcached sizes it.
    pub item_size_max: usize,
    /// Whether items carry a CAS value (`-C` turns it off); it changes the
    /// item header size and so the largest value that fits.
    pub cas_enabled: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            item_size_max: 1024 * 1024,
            cas_enabled: true,
        }
    }
}

impl Limits {
    /// memcached's size of an item as the slab allocator sees it: a 48-byte
    /// header (+8 with CAS), the key and its NUL, the data and its CRLF, and 4
    /// bytes for client flags when they are not zero (`item_make_header`).
    pub fn item_total_size(&self, key_len: usize, value_len: usize, flags: u32) -> usize {
        let header = if self.cas_enabled { 56 } else { 48 };
        let flags_len = if flags != 0 { 4 } else { 0 };
        header + key_len + 1 + value_len + 2 + flags_len
    }

    /// True when memcached stores the item in chunks: past its
    /// `slab_chunk_max` (half its 1 MiB slab page) it allocates the item's
    /// header when the command arrives and each chunk as the data does, so
    /// running out of memory is found during the read.
    pub fn chunked(&self, key_len: usize, value_len: usize, flags: u32) -> bool {
        const SLAB_CHUNK_MAX: usize = 512 * 1024;
        self.item_total_size(key_len, value_len, flags) > SLAB_CHUNK_MAX
    }

    /// True when memcached would answer `SERVER_ERROR object too large for cache`.
    pub fn too_large(&self, key_len: usize, value_len: usize, flags: u32) -> bool {
        self.item_total_size(key_len, value_len, flags) > self.item_size_max
    }
}

/// How a storage command combines the new value with an existing item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreMode {
    Set,
    Add,
    Replace,
    Append,
    Prepend,
    /// `cas`: store only if the item's CAS value still equals the given one.
    Cas,
}
