//! Sessions in which ferrocache is known not to answer as the recorded
//! reference yet, one a line in `tests/corpus/gaps.list`:
//!
//! ```text
//! # comment
//! session_name  why it still differs
//! ```
//!
//! The differential test reports these instead of failing on them, and
//! fails when a listed session answers as recorded, so the list can only
//! shrink and never hides a fixed session.

use super::corpus_dir;

/// The list's file name in the corpus directory.
pub const FILE: &str = "gaps.list";

/// One known difference.
#[derive(Debug, Clone)]
pub struct Gap {
    pub session: String,
    pub reason: String,
}

/// Reads the list; a line without a reason is refused.
pub fn load() -> Result<Vec<Gap>, String> {
    let path = corpus_dir().join(FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let mut gaps = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once(char::is_whitespace) {
            Some((session, reason)) if !reason.trim().is_empty() => gaps.push(Gap {
                session: session.to_string(),
                reason: reason.trim().to_string(),
            }),
            _ => {
                return Err(format!(
                    "{}:{}: a session name and why",
                    path.display(),
                    i + 1
                ));
            }
        }
    }
    Ok(gaps)
}
