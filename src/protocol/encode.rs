//! Reply encoding. (skeleton)
