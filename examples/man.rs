//! Writes the `ferrocache(1)` man page, generated from the same clap
//! definitions as `ferrocache -h`, so the two cannot drift.
//!
//!     cargo run --example man -- target/man/ferrocache.1

use std::io::Write;

use clap::CommandFactory;
use ferrocache::config::Cli;

fn main() -> std::io::Result<()> {
    let out = std::env::args_os()
        .nth(1)
        .unwrap_or_else(|| "target/man/ferrocache.1".into());
    let out = std::path::PathBuf::from(out);
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .section("1")
        .render(&mut page)?;
    std::fs::File::create(&out)?.write_all(&page)?;
    eprintln!("wrote {}", out.display());
    Ok(())
}
