//! nom parsers for the classic text commands. (Skeleton: the parser helper fills this in.)
