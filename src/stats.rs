//! Counters behind `stats`. (skeleton)
