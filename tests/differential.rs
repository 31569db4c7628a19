//! Differential tests: every session of `tests/corpus/*.txt` runs against
//! ferrocache (the subject), freshly started with the session's flags, and
//! its normalised replies (cas values, version strings, non-deterministic
//! stats; see `common/normalise.rs`) must be one of memcached 1.6.45's,
//! recorded in `tests/corpus/*.expected` (see `common/recorded.rs`). The
//! corpus format is described in `common/corpus.rs`.
//!
//! Where an older memcached runs live (Debian's 1.6.18), each session also
//! runs against it, and whether it answers as the recording must match the
//! session's recorded `@older agrees|differs` mark: the sessions both
//! releases answer alike are still compared live, and a stale mark fails.
//!
//! Sessions ferrocache does not answer as recorded yet are listed, with the
//! reason, in `tests/corpus/gaps.list` (see `common/gaps.rs`).
//!
//! The binary protocol's sessions, `tests/corpus/binary/*.txt`, are written
//! as packet descriptions (`common/binary_corpus.rs`) and compared packet by
//! packet, every header field included (`common/binary_runner.rs`), against
//! their own recordings (`tests/corpus/binary/*.expected`) in the same way.
//!
//! Environment:
//! - `FERROCACHE_DIFF_REFERENCE`: the older memcached run live (default:
//!   `memcached` on `$PATH` or in `/usr/bin`). Without one only the
//!   recordings are compared, except under `CI`, where that fails.
//! - `FERROCACHE_DIFF_SUBJECT`: the binary under test (default: ferrocache).
//!   Pointing it at memcached 1.6.45 checks the recordings and the
//!   normalisation (the gap list is then not applied).
//! - `FERROCACHE_DIFF_SESSION`: only run sessions whose name contains this.
//! - `FERROCACHE_DIFF_SHOW`: print the recorded transcript of every session
//!   (with `--nocapture`), to review what the corpus checks.
//! - `FERROCACHE_RECORD_REFERENCE`: the memcached whose replies the ignored
//!   test `record_reference_transcripts` writes into `tests/corpus/*.expected`
//!   and `tests/corpus/binary/*.expected` (run by `scripts/record-corpus.sh`).

#[allow(dead_code)]
mod common;
#[allow(dead_code)]
mod launch;

use common::binary_corpus;
use common::binary_runner;
use common::corpus::{self, Session, parse_payload};
use common::gaps;
use common::normalise::{Normaliser, count_fences};
use common::recorded::{self, Recorded, Recording};
use common::runner::{self, Transcript};
use common::{corpus_dir, escape};
use launch::{Kind, Launch, ServerSpec};
use std::path::PathBuf;
use std::thread;

/// One test per corpus file, each running `$run` on it, and `$files`
/// listing them (checked against the files on disk below).
macro_rules! corpus_tests {
    ($run:ident, $files:ident; $($test:ident => $file:literal,)*) => {
        $(
            #[test]
            fn $test() {
                $run($file);
            }
        )*
        const $files: &[&str] = &[$($file),*];
    };
}

corpus_tests! {
    run_corpus_file, CORPUS_FILES;
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

corpus_tests! {
    run_binary_corpus_file, BINARY_CORPUS_FILES;
    binary_corpus_commands => "commands.txt",
    binary_corpus_quiet => "quiet.txt",
    binary_corpus_errors => "errors.txt",
    binary_corpus_stats => "stats.txt",
    binary_corpus_negotiation => "negotiation.txt",
}

fn subject() -> ServerSpec {
    match std::env::var_os("FERROCACHE_DIFF_SUBJECT") {
        Some(p) => ServerSpec::from_path(PathBuf::from(p)),
        None => ServerSpec::ferrocache(),
    }
}

/// The older memcached that runs live, if there is one. CI installs
/// Debian's: there a missing one is a failure, not a skip.
fn older(file: &str) -> Option<ServerSpec> {
    let older = ServerSpec::memcached();
    if older.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{file}: no memcached found in CI (set FERROCACHE_DIFF_REFERENCE to its path)"
        );
        eprintln!(
            "{file}: no live memcached (set FERROCACHE_DIFF_REFERENCE): \
             only the recorded transcripts are compared"
        );
    }
    older
}

/// A corpus session of either protocol, as comparing and recording see
/// it: its replies are normalised lines either way.
trait Case: Sync {
    fn name(&self) -> &str;
    /// Line of its `===` header, for messages.
    fn line(&self) -> usize;
    fn flags(&self) -> &[String];
    /// Marked `@reference-varies`: memcached answers it more than one way.
    fn varies(&self) -> bool;
    /// A fresh `spec` server with the session's flags, driven through it.
    fn run(&self, spec: &ServerSpec) -> Transcript;
}

/// Both session types have the same fields; each has its own runner.
macro_rules! impl_case {
    ($session:ty, $run:path) => {
        impl Case for $session {
            fn name(&self) -> &str {
                &self.name
            }
            fn line(&self) -> usize {
                self.line
            }
            fn flags(&self) -> &[String] {
                &self.flags
            }
            fn varies(&self) -> bool {
                self.reference_varies
            }
            fn run(&self, spec: &ServerSpec) -> Transcript {
                $run(spec, self)
            }
        }
    };
}

impl_case!(Session, runner::run);
impl_case!(binary_corpus::Session, binary_runner::run);

fn run_corpus_file(file: &str) {
    let path = corpus_dir().join(file);
    let corpus = corpus::load(&path).unwrap_or_else(|e| panic!("{e}"));
    compare_with_recording(file, &path, &corpus.sessions);
}

fn binary_corpus_dir() -> PathBuf {
    corpus_dir().join("binary")
}

fn run_binary_corpus_file(file: &str) {
    let path = binary_corpus_dir().join(file);
    let corpus = binary_corpus::load(&path).unwrap_or_else(|e| panic!("{e}"));
    compare_with_recording(&format!("binary/{file}"), &path, &corpus.sessions);
}

/// Runs every session of the corpus file at `path` against the subject and
/// checks its answer against the recording beside the file; where an older
/// memcached runs live, checks each session's `@older` mark too.
fn compare_with_recording<S: Case>(file: &str, path: &std::path::Path, sessions: &[S]) {
    let subject = subject();
    let recording = recorded::load(&recorded::path_for(path)).unwrap_or_else(|e| panic!("{e}"));
    let older = older(file);
    let gaps = if std::env::var_os("FERROCACHE_DIFF_SUBJECT").is_none() {
        gaps::load().unwrap_or_else(|e| panic!("{e}"))
    } else {
        Vec::new()
    };
    let only = std::env::var("FERROCACHE_DIFF_SESSION").ok();
    let mut failures = Vec::new();
    let mut known_gaps = Vec::new();
    let mut ran = 0;
    for stale in recording
        .sessions
        .iter()
        .filter(|r| !sessions.iter().any(|s| s.name() == r.name))
    {
        failures.push(format!(
            "=== {}: recorded but not in {file}: re-record (scripts/record-corpus.sh)\n",
            stale.name
        ));
    }
    for session in sessions {
        if only
            .as_ref()
            .is_some_and(|o| !session.name().contains(o.as_str()))
        {
            continue;
        }
        ran += 1;
        let Some(expected) = recording.session(session.name()) else {
            failures.push(format!(
                "=== {} ({file}:{}): no recorded reply: re-record (scripts/record-corpus.sh)\n",
                session.name(),
                session.line()
            ));
            continue;
        };
        let (got, old) = thread::scope(|s| {
            let got = s.spawn(|| session.run(&subject));
            let old = older.as_ref().map(|o| s.spawn(|| session.run(o)));
            (got.join().unwrap(), old.map(|o| o.join().unwrap()))
        });
        if std::env::var_os("FERROCACHE_DIFF_SHOW").is_some() {
            println!("=== {} [{}]", session.name(), session.flags().join(" "));
            for line in fold(&expected.answers[0]) {
                println!("    {line}");
            }
        }
        let matches = is_an_answer(&subject, session, expected, &got);
        let gap = gaps.iter().find(|g| g.session == session.name());
        match (matches, gap) {
            (true, None) => {}
            (false, None) => failures.push(report(file, session, &recording, expected, &got)),
            (false, Some(g)) => known_gaps.push(format!("{} ({})", g.session, g.reason)),
            (true, Some(_)) => failures.push(format!(
                "=== {} ({file}:{}): listed in {} but answers as recorded now: \
                 take it off the list\n",
                session.name(),
                session.line(),
                gaps::FILE
            )),
        }
        if let (Some(older), Some(old)) = (&older, old) {
            let agrees = is_an_answer(older, session, expected, &old);
            if agrees != expected.older_agrees {
                let mut msg = format!(
                    "=== {} ({file}:{}): {} {} the recording says ({} {}): \
                     re-record (scripts/record-corpus.sh)\n",
                    session.name(),
                    session.line(),
                    older.name(),
                    if agrees {
                        "answers as the reference, unlike what"
                    } else {
                        "differs from the reference, unlike what"
                    },
                    recording.compared,
                    if expected.older_agrees {
                        "agrees"
                    } else {
                        "differs"
                    },
                );
                if !agrees {
                    msg.push_str(&report(file, session, &recording, expected, &old));
                }
                failures.push(msg);
            }
        }
    }
    if !known_gaps.is_empty() {
        eprintln!(
            "{file}: {} sessions still differ from {} as listed in {}:\n  {}",
            known_gaps.len(),
            recording.reference,
            gaps::FILE,
            known_gaps.join("\n  ")
        );
    }
    if !failures.is_empty() {
        panic!(
            "{} of {ran} sessions in {file} fail against the recorded replies of {} \
             (subject {}):\n\n{}",
            failures.len(),
            recording.reference,
            subject.name(),
            failures.join("\n")
        );
    }
}

/// Whether `got` is one of the recorded answers; for a session that
/// memcached answers in more than one way, whether one of a few more runs
/// of `spec` is.
fn is_an_answer(
    spec: &ServerSpec,
    session: &impl Case,
    expected: &Recorded,
    got: &Transcript,
) -> bool {
    if expected.answers.contains(&got.lines) {
        return true;
    }
    session.varies()
        && (0..REFERENCE_RERUNS).any(|_| expected.answers.contains(&session.run(spec).lines))
}

/// How often a `@reference-varies` session is rerun.
const REFERENCE_RERUNS: usize = 8;

/// A readable account of one differing session: every line that differs
/// from the (first) recorded answer (a line diff, `-` recorded, `+` got),
/// then both in full (long runs of equal lines folded).
fn report(
    file: &str,
    session: &impl Case,
    recording: &Recording,
    expected: &Recorded,
    got: &Transcript,
) -> String {
    let mut out = format!(
        "=== {} ({file}:{}) flags [{}]\n",
        session.name(),
        session.line(),
        session.flags().join(" "),
    );
    let want = &expected.answers[0];
    for line in diff(want, &got.lines) {
        out.push_str(&format!("  {line}\n"));
    }
    out.push_str(&format!("--- {} (recorded)\n", recording.reference));
    for line in fold(want) {
        out.push_str(&format!("    {line}\n"));
    }
    if expected.answers.len() > 1 {
        out.push_str(&format!(
            "    (and {} more recorded answers)\n",
            expected.answers.len() - 1
        ));
    }
    out.push_str(&format!("--- {}\n", got.server));
    for line in fold(&got.lines) {
        out.push_str(&format!("    {line}\n"));
    }
    for note in &got.notes {
        out.push_str(&format!("    ({note})\n"));
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

/// Records the reference's replies to every session into
/// `tests/corpus/*.expected`, with the `@older` marks from a live run of the
/// older memcached. Each session runs twice (more if it is marked
/// `@reference-varies`); a session answered two ways without that mark
/// stops the recording.
#[test]
#[ignore = "writes the recorded transcripts: run by scripts/record-corpus.sh"]
fn record_reference_transcripts() {
    let bin = std::env::var_os("FERROCACHE_RECORD_REFERENCE")
        .expect("FERROCACHE_RECORD_REFERENCE: the memcached to record");
    let reference = ServerSpec {
        bin: PathBuf::from(bin),
        kind: Kind::Memcached,
    };
    let older = ServerSpec::memcached().expect("an older memcached for the @older marks");
    let (reference_version, older_version) = (version_of(&reference), version_of(&older));
    assert_ne!(
        reference_version, older_version,
        "the recorded and the older memcached are the same release"
    );
    let record = |path: PathBuf, sessions: &[&dyn Case]| {
        let mut recording = Recording {
            reference: reference_version.clone(),
            compared: older_version.clone(),
            sessions: Vec::new(),
        };
        for session in sessions {
            recording
                .sessions
                .push(record_session(&reference, &older, *session));
        }
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        std::fs::write(
            recorded::path_for(&path),
            recorded::render(&recording, &name),
        )
        .expect("write the recording");
    };
    let record = &record;
    thread::scope(|s| {
        for file in CORPUS_FILES {
            s.spawn(move || {
                let path = corpus_dir().join(file);
                let corpus = corpus::load(&path).unwrap_or_else(|e| panic!("{e}"));
                let sessions: Vec<&dyn Case> = corpus.sessions.iter().map(|c| c as _).collect();
                record(path, &sessions);
            });
        }
        for file in BINARY_CORPUS_FILES {
            s.spawn(move || {
                let path = binary_corpus_dir().join(file);
                let corpus = binary_corpus::load(&path).unwrap_or_else(|e| panic!("{e}"));
                let sessions: Vec<&dyn Case> = corpus.sessions.iter().map(|c| c as _).collect();
                record(path, &sessions);
            });
        }
    });
}

fn record_session(reference: &ServerSpec, older: &ServerSpec, session: &dyn Case) -> Recorded {
    let runs = if session.varies() {
        1 + 2 * REFERENCE_RERUNS
    } else {
        2
    };
    let mut answers: Vec<Vec<String>> = Vec::new();
    for _ in 0..runs {
        let lines = session.run(reference).lines;
        if !answers.contains(&lines) {
            answers.push(lines);
        }
    }
    assert!(
        session.varies() || answers.len() == 1,
        "{} answers {} in two ways without @reference-varies:\n{}",
        reference.name(),
        session.name(),
        diff(&answers[0], &answers[answers.len() - 1]).join("\n")
    );
    // In a fixed order, so that a re-recording changes only what changed.
    answers.sort();
    let older_runs = if session.varies() {
        1 + REFERENCE_RERUNS
    } else {
        1
    };
    let older_agrees = (0..older_runs).any(|_| answers.contains(&session.run(older).lines));
    Recorded {
        name: session.name().to_string(),
        older_agrees,
        answers,
    }
}

/// The `version` reply of a server, e.g. `memcached 1.6.45`.
fn version_of(spec: &ServerSpec) -> String {
    let (_server, mut conn) = Launch::new(spec).start_with_conn();
    let reply = launch::ask(&mut conn, "version\r\n", "\r\n");
    let version = reply.trim_end().strip_prefix("VERSION ").unwrap_or(&reply);
    format!("memcached {}", version.trim_end())
}

#[test]
fn a_recording_reads_back_as_written() {
    let rec = Recording {
        reference: "memcached 1.6.45".into(),
        compared: "memcached 1.6.18".into(),
        sessions: vec![
            Recorded {
                name: "a".into(),
                older_agrees: true,
                answers: vec![vec!["[conn 1]".into(), "STORED\\r\\n".into()]],
            },
            Recorded {
                name: "b".into(),
                older_agrees: false,
                answers: vec![vec!["x".into()], vec!["y".into(), "".into()]],
            },
        ],
    };
    assert_eq!(
        recorded::parse(&recorded::render(&rec, "t.txt")).unwrap(),
        rec
    );
}

#[test]
fn every_corpus_file_has_a_recording_of_every_session() {
    let check = |path: PathBuf, names: Vec<String>| {
        let recording =
            recorded::load(&recorded::path_for(&path)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            names,
            recording
                .sessions
                .iter()
                .map(|s| s.name.clone())
                .collect::<Vec<_>>(),
            "{}: re-record (scripts/record-corpus.sh)",
            path.display()
        );
    };
    for file in CORPUS_FILES {
        let path = corpus_dir().join(file);
        let corpus = corpus::load(&path).unwrap_or_else(|e| panic!("{e}"));
        check(path, corpus.sessions.into_iter().map(|s| s.name).collect());
    }
    for file in BINARY_CORPUS_FILES {
        let path = binary_corpus_dir().join(file);
        let corpus = binary_corpus::load(&path).unwrap_or_else(|e| panic!("{e}"));
        check(path, corpus.sessions.into_iter().map(|s| s.name).collect());
    }
}

#[test]
fn every_listed_gap_is_a_corpus_session() {
    let mut sessions = Vec::new();
    for file in CORPUS_FILES {
        let corpus = corpus::load(&corpus_dir().join(file)).unwrap_or_else(|e| panic!("{e}"));
        sessions.extend(corpus.sessions.into_iter().map(|s| s.name));
    }
    for gap in gaps::load().unwrap_or_else(|e| panic!("{e}")) {
        assert!(
            sessions.contains(&gap.session),
            "{}: {} is no corpus session",
            gaps::FILE,
            gap.session
        );
    }
}

/// The `.txt` files in `dir` are exactly those `listed` in a
/// `corpus_tests!`.
fn assert_listed(dir: &std::path::Path, listed: &[&str]) {
    let mut on_disk: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".txt"))
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = listed.iter().map(|s| s.to_string()).collect();
    listed.sort();
    assert_eq!(
        on_disk,
        listed,
        "add new files of {} to their corpus_tests!",
        dir.display()
    );
}

#[test]
fn every_corpus_file_has_a_test() {
    assert_listed(&corpus_dir(), CORPUS_FILES);
}

#[test]
fn every_corpus_file_parses() {
    for file in CORPUS_FILES {
        corpus::load(&corpus_dir().join(file)).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn every_binary_corpus_file_has_a_test_and_parses() {
    assert_listed(&binary_corpus_dir(), BINARY_CORPUS_FILES);
    for file in BINARY_CORPUS_FILES {
        let c =
            binary_corpus::load(&binary_corpus_dir().join(file)).unwrap_or_else(|e| panic!("{e}"));
        assert!(!c.sessions.is_empty(), "{file} has no sessions");
    }
}

#[test]
fn binary_packets_are_built_from_their_description() {
    let c = binary_corpus::parse(
        std::path::Path::new("t"),
        b"=== s\n> set key=k flags=5 exptime=7 value=v opaque=0x10 cas=$1\n+ raw \\x81\n",
    )
    .unwrap();
    let binary_corpus::Step::Write(ps) = &c.sessions[0].steps[0] else {
        panic!("a write");
    };
    let set = ps[0].expand(&[9]);
    assert_eq!(
        set,
        [
            &[0x80u8, 0x01, 0, 1, 8, 0, 0, 0, 0, 0, 0, 10, 0, 0, 0, 0x10][..],
            &9u64.to_be_bytes(),
            &[0, 0, 0, 5, 0, 0, 0, 7, b'k', b'v'],
        ]
        .concat()
    );
    assert_eq!(ps[1].expand(&[]), [0x81]);
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
