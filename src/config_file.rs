//! `--config-file PATH`: Debian's `/etc/memcached.conf`, one memcached flag
//! per line, read into command-line arguments the way Debian's
//! `systemd-memcached-wrapper` reads it, so an operator can point ferrocache
//! at an unchanged copy of the file memcached used.
//!
//! Per line: `#` starts a comment (`\#` does not); surrounding space is
//! trimmed and empty lines are skipped; `-d` (daemonize) and `-h` lines are
//! skipped, because a service manager keeps the process in the foreground;
//! `logfile <path>` is ignored, because the journal (or the terminal) takes
//! the log. Every other line is split on white space into arguments that
//! come before those of the command line, so the command line wins.
//!
//! Where the wrapper passes anything on, a line that is not a flag and not
//! `logfile` is refused here, naming it: a setting that silently does nothing
//! is worse than a refusal at start-up.

use std::ffi::OsString;
use std::path::Path;

/// The flag that names the file, as `--config-file PATH` or `--config-file=PATH`.
pub const FLAG: &str = "--config-file";

/// One line of the file that carries flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// 1-based, for messages.
    pub number: usize,
    /// The line without its comment, trimmed.
    pub text: String,
    pub args: Vec<String>,
}

/// The lines of `text` that carry flags.
///
/// # Errors
/// A line that is neither a flag nor a directive memcached's wrapper knows.
pub fn parse(text: &str) -> Result<Vec<Line>, String> {
    let mut lines = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let number = i + 1;
        let line = strip_comment(raw).trim();
        if line.is_empty() || line.starts_with("-d") || line.starts_with("-h") {
            continue;
        }
        if !line.starts_with('-') {
            let directive = line.split_whitespace().next().unwrap_or_default();
            if directive == "logfile" {
                continue;
            }
            return Err(format!(
                "line {number}: `{line}`: not a flag (only `logfile` may stand without a leading -)"
            ));
        }
        lines.push(Line {
            number,
            text: line.to_string(),
            args: line.split_whitespace().map(str::to_string).collect(),
        });
    }
    Ok(lines)
}

/// The line up to its first `#` that is not escaped as `\#`.
fn strip_comment(line: &str) -> &str {
    let bytes = line.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'#' && (i == 0 || bytes[i - 1] != b'\\') {
            return &line[..i];
        }
    }
    line
}

/// Reads the file named by `--config-file` in `args` (the program name
/// first) and returns the arguments to parse: the program name, the file's
/// flags in file order, then the command line's other arguments. Without
/// the flag, `args` come back unchanged. `check` is called on each line's
/// arguments (the program name first), so that a line ferrocache refuses is
/// named in the message.
///
/// # Errors
/// The file cannot be read, or one of its lines is refused.
pub fn expand(
    args: Vec<OsString>,
    check: impl Fn(&[OsString]) -> Result<(), String>,
) -> Result<Vec<OsString>, String> {
    let mut rest = Vec::with_capacity(args.len());
    let mut path = None;
    let mut it = args.into_iter();
    let program = it.next().unwrap_or_else(|| "ferrocache".into());
    while let Some(arg) = it.next() {
        if arg == FLAG {
            let Some(p) = it.next() else {
                return Err(format!("{FLAG} needs a file name"));
            };
            path = Some(p);
        } else if let Some(p) = arg.to_str().and_then(|s| s.strip_prefix("--config-file=")) {
            path = Some(p.into());
        } else {
            rest.push(arg);
        }
    }
    let Some(path) = path else {
        let mut all = vec![program];
        all.extend(rest);
        return Ok(all);
    };
    let path = Path::new(&path);
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let lines = parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut all = vec![program.clone()];
    for line in &lines {
        let mut one = vec![program.clone()];
        one.extend(line.args.iter().map(OsString::from));
        check(&one).map_err(|e| {
            format!(
                "{}: line {}: `{}`: {e}",
                path.display(),
                line.number,
                line.text
            )
        })?;
        all.extend(one.into_iter().skip(1));
    }
    all.extend(rest);
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Debian's default /etc/memcached.conf, comments and all (bookworm).
    const DEBIAN_DEFAULT: &str = "\
# memcached default config file
# 2003 - Jay Bonci <jaybonci@debian.org>
# This configuration file is read by the start-memcached script provided as
# part of the Debian GNU/Linux distribution.

# Run memcached as a daemon. This command is implied, and is not needed for the
# daemon to run. See the README.Debian that comes with this package for more
# information.
-d

# Log memcached's output to /var/log/memcached
logfile /var/log/memcached.log

# Be verbose
# -v

# Be even more verbose (print client commands as well)
# -vv

# Start with a cap of 64 megs of memory. It's reasonable, and the daemon default
# Note that the daemon will grow to this size, but does not start out holding this much
# memory
-m 64

# Default connection port is 11211
-p 11211

# Run the daemon as root. The start-memcached will default to running as root if no
# -u command is present in this config file
-u memcache

# Specify which IP address to listen on. The default is to listen on all IP addresses
# This parameter is one of the only security measures that memcached has, so make sure
# it's listening on a firewalled interface.
-l 127.0.0.1

# Limit the number of simultaneous incoming connections. The daemon default is 1024
# -c 1024

# Lock down all paged memory. Consult with the README and homepage before you do this
# -k

# Return error when memory is exhausted (rather than removing items)
# -M

# Maximize core file limit
# -r

# Use a pidfile
-P /var/run/memcached/memcached.pid
";

    fn args(lines: &[Line]) -> Vec<&str> {
        lines
            .iter()
            .flat_map(|l| l.args.iter().map(String::as_str))
            .collect()
    }

    #[test]
    fn debians_default_file_gives_its_flags() {
        let lines = parse(DEBIAN_DEFAULT).unwrap();
        assert_eq!(
            args(&lines),
            [
                "-m",
                "64",
                "-p",
                "11211",
                "-u",
                "memcache",
                "-l",
                "127.0.0.1",
                "-P",
                "/var/run/memcached/memcached.pid"
            ]
        );
        assert_eq!(lines[0].number, 23);
        assert_eq!(lines[0].text, "-m 64");
    }

    #[test]
    fn comments_space_and_escaped_hashes() {
        let lines = parse("  -c 10   # ten\n\t\n-o idle_timeout=5 \\#x\n-h\n-dX\n").unwrap();
        assert_eq!(args(&lines), ["-c", "10", "-o", "idle_timeout=5", "\\#x"]);
    }

    #[test]
    fn a_line_that_is_no_flag_is_refused_by_number() {
        let err = parse("-m 64\nmaxconns 10\n").unwrap_err();
        assert!(err.starts_with("line 2: `maxconns 10`"), "{err}");
    }

    #[test]
    fn expand_puts_the_file_before_the_command_line() {
        let dir = std::env::temp_dir().join(format!("ferrocache-conf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("memcached.conf");
        std::fs::write(&path, "-m 32\n# -c 5\n-t 2\n").unwrap();
        let os = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        let ok = |_: &[OsString]| Ok(());
        let got = expand(
            os(&[
                "ferrocache",
                "-p",
                "1",
                "--config-file",
                path.to_str().unwrap(),
                "-v",
            ]),
            ok,
        )
        .unwrap();
        assert_eq!(
            got,
            os(&["ferrocache", "-m", "32", "-t", "2", "-p", "1", "-v"])
        );
        let inline = format!("--config-file={}", path.display());
        assert_eq!(
            expand(os(&["ferrocache", &inline]), ok).unwrap(),
            os(&["ferrocache", "-m", "32", "-t", "2"])
        );
        // Without the flag, nothing changes.
        assert_eq!(
            expand(os(&["ferrocache", "-m", "8"]), ok).unwrap(),
            os(&["ferrocache", "-m", "8"])
        );
        // A refused line is named with its file and number.
        let err = expand(
            os(&["ferrocache", "--config-file", path.to_str().unwrap()]),
            |a| {
                if a.iter().any(|x| x == "-t") {
                    Err("no".into())
                } else {
                    Ok(())
                }
            },
        )
        .unwrap_err();
        assert_eq!(err, format!("{}: line 3: `-t 2`: no", path.display()));
        assert!(expand(os(&["ferrocache", "--config-file"]), ok).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
