//! Server. (skeleton)
