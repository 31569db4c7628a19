//! Recorded reference transcripts: memcached 1.6.45's normalised replies to
//! every session of a corpus file, kept next to it as `<file>.expected`
//! (`storage.txt` → `storage.expected`), because CI can only install
//! Debian's older memcached.
//!
//! ```text
//! # comments
//! @reference memcached 1.6.45             (what answered, from `version`)
//! @compared memcached 1.6.18              (the older release the marks are about)
//! === session_name
//! @older agrees                           (or `@older differs`)
//! | [conn 1]                              (one normalised line, see normalise.rs)
//! | STORED\r\n
//! @or                                     (another answer of a @reference-varies session)
//! | ...
//! ```
//!
//! The `@older` mark is derived when recording: `agrees` when the older
//! release's transcript is one of the recorded answers. The differential
//! test re-checks the mark whenever the older release runs live.
//!
//! Written only by the recorder (`scripts/record-corpus.sh`); never edited
//! by hand.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The recorded answers to one corpus file.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recording {
    /// The `version` reply of the recorded server, e.g. `memcached 1.6.45`.
    pub reference: String,
    /// The `version` reply of the older server the marks compare with.
    pub compared: String,
    pub sessions: Vec<Recorded>,
}

/// One session's recorded answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub name: String,
    /// Whether the older release gave one of these answers.
    pub older_agrees: bool,
    /// Every distinct answer seen (more than one only for a session marked
    /// `@reference-varies`).
    pub answers: Vec<Vec<String>>,
}

impl Recording {
    pub fn session(&self, name: &str) -> Option<&Recorded> {
        self.sessions.iter().find(|s| s.name == name)
    }
}

/// `tests/corpus/storage.txt` → `tests/corpus/storage.expected`.
pub fn path_for(corpus_file: &Path) -> PathBuf {
    corpus_file.with_extension("expected")
}

/// Reads a recording; the error says where it is malformed.
pub fn load(path: &Path) -> Result<Recording, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse(&text).map_err(|(line, msg)| format!("{}:{line}: {msg}", path.display()))
}

/// Parses a recording's text.
pub fn parse(text: &str) -> Result<Recording, (usize, String)> {
    let mut rec = Recording::default();
    for (i, line) in text.lines().enumerate() {
        let lineno = i + 1;
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(v) = line.strip_prefix("@reference ") {
            rec.reference = v.to_string();
        } else if let Some(v) = line.strip_prefix("@compared ") {
            rec.compared = v.to_string();
        } else if let Some(name) = line.strip_prefix("=== ") {
            rec.sessions.push(Recorded {
                name: name.to_string(),
                older_agrees: false,
                answers: vec![Vec::new()],
            });
        } else {
            let Some(s) = rec.sessions.last_mut() else {
                return Err((lineno, "text before the first `=== name`".into()));
            };
            match line {
                "@older agrees" => s.older_agrees = true,
                "@older differs" => s.older_agrees = false,
                "@or" => s.answers.push(Vec::new()),
                _ => match line.strip_prefix("| ") {
                    Some(l) => s
                        .answers
                        .last_mut()
                        .expect("one answer at least")
                        .push(l.into()),
                    None => return Err((lineno, format!("unexpected line {line:?}"))),
                },
            }
        }
    }
    Ok(rec)
}

/// The text of a recording; `corpus_name` is named in its header.
pub fn render(rec: &Recording, corpus_name: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# The reference's normalised replies to the sessions of {corpus_name}.\n\
         # Written by scripts/record-corpus.sh; do not edit by hand.\n\
         @reference {}\n@compared {}",
        rec.reference, rec.compared
    );
    for s in &rec.sessions {
        let _ = writeln!(out, "\n=== {}", s.name);
        let _ = writeln!(
            out,
            "@older {}",
            if s.older_agrees { "agrees" } else { "differs" }
        );
        for (i, answer) in s.answers.iter().enumerate() {
            if i > 0 {
                out.push_str("@or\n");
            }
            for l in answer {
                let _ = writeln!(out, "| {l}");
            }
        }
    }
    out
}
