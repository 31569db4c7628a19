//! What the criterion benchmarks share.

use std::time::Duration;

use criterion::Criterion;

/// Short runs: the parser's inputs are small and steady, and the store's
/// five operations at five item counts, fills included, must finish in a
/// few minutes on a shared 2-core machine.
pub fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .without_plots()
}
