//! Command line. (skeleton)
