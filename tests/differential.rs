//! Differential tests: every session of `tests/corpus/*.txt` runs against
//! memcached (the reference) and ferrocache (the subject), each freshly
//! started with the same flags, and both byte streams must be equal after
//! normalisation (cas values, version strings, non-deterministic stats; see
//! `common/normalise.rs`). The corpus format is described in
//! `common/corpus.rs`.
//!
//! Environment:
//! - `FERROCACHE_DIFF_REFERENCE`: the memcached binary (default: `memcached`
//!   on `$PATH` or in `/usr/bin`). Without one these tests are skipped,
//!   except under `CI`, where they fail.
//! - `FERROCACHE_DIFF_SUBJECT`: the binary under test (default: ferrocache).
//!   Pointing it at memcached checks the corpus and the normalisation: two
//!   memcached instances must never differ.
//! - `FERROCACHE_DIFF_SESSION`: only run sessions whose name contains this.
//! - `FERROCACHE_DIFF_SHOW`: print the reference transcript of every session
//!   (with `--nocapture`), to review what the corpus checks.

#[allow(dead_code)]
mod common;
#[allow(dead_code)]
mod launch;

use common::corpus::{self, Session, parse_payload};
use common::normalise::{Normaliser, count_fences};
use common::runner::{self, Transcript};
use common::{corpus_dir, escape};
use launch::ServerSpec;
use std::path::PathBuf;
use std::thread;

macro_rules! corpus_tests {
    ($($test:ident => $file:literal,)*) => {
        $(
            #[test]
            fn $test() {
                run_corpus_file($file);
            }
        )*
        const CORPUS_FILES: &[&str] = &[$($file),*];
    };
}

corpus_tests! {
    corpus_framing => "framing.txt",
    corpus_storage => "storage.txt",
    corpus_retrieval => "retrieval.txt",
    corpus_delete => "delete.txt",
    corpus_incr_decr => "incr_decr.txt",
    corpus_touch => "touch.txt",
    corpus_other_commands => "other_commands.txt",
    corpus_stats => "stats.txt",
    corpus_connection => "connection.txt",
    corpus_limits => "limits.txt",
    corpus_edge_cases => "edge_cases.txt",
    corpus_meta => "meta.txt",
    corpus_watch => "watch.txt",
}

fn subject() -> ServerSpec {
    match std::env::var_os("FERROCACHE_DIFF_SUBJECT") {
        Some(p) => ServerSpec::from_path(PathBuf::from(p)),
        None => ServerSpec::ferrocache(),
    }
}

fn run_corpus_file(file: &str) {
    let Some(reference) = ServerSpec::memcached() else {
        // CI installs memcached: there a missing reference is a failure, not a skip.
        assert!(
            std::env::var_os("CI").is_none(),
            "{file}: no memcached found in CI (set FERROCACHE_DIFF_REFERENCE to its path)"
        );
        eprintln!("SKIPPED {file}: no memcached found (set FERROCACHE_DIFF_REFERENCE to its path)");
        return;
    };
    let subject = subject();
    let path = corpus_dir().join(file);
    let corpus = corpus::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let only = std::env::var("FERROCACHE_DIFF_SESSION").ok();
    let mut failures = Vec::new();
    let mut ran = 0;
    for session in &corpus.sessions {
        if only
            .as_ref()
            .is_some_and(|o| !session.name.contains(o.as_str()))
        {
            continue;
        }
        ran += 1;
        let (a, b) = thread::scope(|s| {
            let a = s.spawn(|| runner::run(&reference, session));
            let b = s.spawn(|| runner::run(&subject, session));
            (a.join().unwrap(), b.join().unwrap())
        });
        if std::env::var_os("FERROCACHE_DIFF_SHOW").is_some() {
            println!("=== {} [{}]", session.name, session.flags.join(" "));
            for line in fold(&a.lines) {
                println!("    {line}");
            }
        }
        if a.lines != b.lines && !matches_a_rerun(&reference, &subject, session, (&a, &b)) {
            failures.push(report(file, session, &a, &b));
        }
    }
    if !failures.is_empty() {
        panic!(
            "{} of {ran} sessions in {file} differ between {} and {}:\n\n{}",
            failures.len(),
            reference.name(),
            subject.name(),
            failures.join("\n")
        );
    }
}

/// For sessions that memcached answers in more than one way: whether, in a
/// few more runs of both servers, some answer of the subject is one of the
/// reference's.
fn matches_a_rerun(
    reference: &ServerSpec,
    subject: &ServerSpec,
    session: &Session,
    first: (&Transcript, &Transcript),
) -> bool {
    if !session.reference_varies {
        return false;
    }
    let mut seen_reference = vec![first.0.lines.clone()];
    let mut seen_subject = vec![first.1.lines.clone()];
    for _ in 0..REFERENCE_RERUNS {
        seen_reference.push(runner::run(reference, session).lines);
        seen_subject.push(runner::run(subject, session).lines);
        if seen_subject.iter().any(|s| seen_reference.contains(s)) {
            return true;
        }
    }
    false
}

/// How often a `@reference-varies` session is rerun.
const REFERENCE_RERUNS: usize = 8;

/// A readable account of one differing session: every differing line (a
/// line diff, `-` reference, `+` subject), then both streams in full (long
/// runs of equal lines folded).
fn report(file: &str, session: &Session, a: &Transcript, b: &Transcript) -> String {
    let mut out = format!(
        "=== {} ({file}:{}) flags [{}]\n",
        session.name,
        session.line,
        session.flags.join(" "),
    );
    for line in diff(&a.lines, &b.lines) {
        out.push_str(&format!("  {line}\n"));
    }
    for t in [a, b] {
        out.push_str(&format!("--- {}\n", t.server));
        for line in fold(&t.lines) {
            out.push_str(&format!("    {line}\n"));
        }
        for note in &t.notes {
            out.push_str(&format!("    ({note})\n"));
        }
    }
    out
}

/// The lines only in `a` (`-`) or only in `b` (`+`), by longest common
/// subsequence, with the line number in `a` for context. Huge transcripts
/// are compared line by line instead.
fn diff(a: &[String], b: &[String]) -> Vec<String> {
    let (n, m) = (a.len(), b.len());
    let mut out = Vec::new();
    if n * m > 4_000_000 {
        for i in 0..n.max(m) {
            if a.get(i) != b.get(i) {
                out.push(format!("@{} - {}", i + 1, a.get(i).map_or("", |s| s)));
                out.push(format!("@{} + {}", i + 1, b.get(i).map_or("", |s| s)));
            }
        }
    } else {
        // lcs[i][j]: length of the longest common subsequence of a[i..], b[j..].
        let mut lcs = vec![vec![0u32; m + 1]; n + 1];
        for i in (0..n).rev() {
            for j in (0..m).rev() {
                lcs[i][j] = if a[i] == b[j] {
                    lcs[i + 1][j + 1] + 1
                } else {
                    lcs[i + 1][j].max(lcs[i][j + 1])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < n || j < m {
            if i < n && j < m && a[i] == b[j] {
                i += 1;
                j += 1;
            } else if j < m && (i == n || lcs[i][j + 1] > lcs[i + 1][j]) {
                out.push(format!("@{} + {}", i + 1, b[j]));
                j += 1;
            } else {
                out.push(format!("@{} - {}", i + 1, a[i]));
                i += 1;
            }
        }
    }
    if out.len() > 60 {
        let more = out.len() - 60;
        out.truncate(60);
        out.push(format!("... and {more} more differing lines"));
    }
    out
}

/// Folds runs of more than three equal lines into one line with a count.
fn fold(lines: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let run = lines[i..].iter().take_while(|l| **l == lines[i]).count();
        if run > 3 {
            out.push(format!("{}   (x{run})", lines[i]));
        } else {
            out.extend(lines[i..i + run].iter().cloned());
        }
        i += run;
    }
    out
}

#[test]
fn every_corpus_file_has_a_test() {
    let mut on_disk: Vec<String> = std::fs::read_dir(corpus_dir())
        .expect("read tests/corpus")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".txt"))
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = CORPUS_FILES.iter().map(|s| s.to_string()).collect();
    listed.sort();
    assert_eq!(on_disk, listed, "add new corpus files to corpus_tests!");
}

#[test]
fn every_corpus_file_parses() {
    for file in CORPUS_FILES {
        corpus::load(&corpus_dir().join(file)).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn payload_escapes_and_repeats_expand() {
    let p = parse_payload(br"a\r\n\t\0\s\\\{\}\x41\*3{k\# }\*2{\*2{x}y}\$2").unwrap();
    assert_eq!(p.expand(&[7, 99]), b"a\r\n\t\0 \\{}Ak0 k1 k2 xxyxxy99");
}

#[test]
fn bad_payload_escapes_are_refused() {
    for bad in [
        &b"\\q"[..],
        b"\\x4",
        b"\\*3x",
        b"\\*3{x",
        b"a}",
        b"\t",
        b"\\$0",
    ] {
        assert!(parse_payload(bad).is_err(), "{}", escape(bad));
    }
}

#[test]
fn cas_values_are_numbered_by_first_appearance() {
    let mut n = Normaliser::new(&[], &[]);
    let lines = n.render(
        b"VALUE a 0 1 77\r\nx\r\nVALUE b 5 11 12\r\nVALUE 1 2 3\r\nVALUE c 0 0 77\r\n\r\nEND\r\n",
    );
    assert_eq!(
        lines,
        [
            "VALUE a 0 1 \\$1\\r\\n",
            "  x\\r\\n",
            "VALUE b 5 11 \\$2\\r\\n",
            // The data block of `b` is taken as data even though it looks like a header.
            "  VALUE 1 2 3\\r\\n",
            "VALUE c 0 0 \\$1\\r\\n",
            "  \\r\\n",
            "END\\r\\n",
        ]
    );
    assert_eq!(n.cas_values(), [77, 12]);
}

#[test]
fn stats_values_are_masked_unless_deterministic() {
    let mut n = Normaliser::new(&["uptime".into()], &["cmd_get".into()]);
    let lines = n.render(
        b"STAT pid 42\r\nSTAT uptime 3\r\nSTAT cmd_get 1\r\nSTAT get_hits 2\r\nSTAT items:3:number 4\r\nSTAT 27:addr tcp:127.0.0.1:5\r\nEND\r\n",
    );
    assert_eq!(
        lines,
        [
            "STAT pid <masked>\\r\\n",
            "STAT uptime 3\\r\\n",
            "STAT cmd_get <masked>\\r\\n",
            "STAT get_hits 2\\r\\n",
            "STAT items:3:number 4\\r\\n",
            "STAT fd1:addr <masked>\\r\\n",
            "END\\r\\n",
        ]
    );
}

#[test]
fn line_diff_lists_what_each_side_has_alone() {
    let a: Vec<String> = ["x", "y", "z"].iter().map(|s| s.to_string()).collect();
    let b: Vec<String> = ["x", "q", "z", "w"].iter().map(|s| s.to_string()).collect();
    assert_eq!(diff(&a, &b), ["@2 - y", "@3 + q", "@4 + w"]);
}

#[test]
fn fences_inside_values_are_not_counted() {
    assert_eq!(count_fences(b"VALUE k 0 2\r\nMN\r\nEND\r\nMN\r\n"), 1);
    assert_eq!(count_fences(b"VA 2 c1\r\nMN\r\nMN\r\nMN\r\n"), 2);
}
