//! Random numbers for the load: a small fast PRNG and a Zipf sampler.
//!
//! Both are deterministic from a seed, so two servers measured in turn see
//! the same key sequence from each connection.

/// wyrand: fast, good enough for choosing keys, seeded per connection.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0xA076_1D64_78BD_642F);
        let t = u128::from(self.0) * u128::from(self.0 ^ 0xE703_7ED1_A0B4_28DB);
        ((t >> 64) as u64) ^ (t as u64)
    }

    /// Uniform in `0..n` (n > 0), by multiply-shift: no modulo bias worth
    /// caring about for key choice.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// Zipf distribution over ranks `1..=n` with exponent `s`: P(k) ∝ k^-s.
///
/// Rejection-inversion (Hörmann and Derflinger, 1996): O(1) per sample and
/// no table, so a key space of millions costs nothing to set up.
#[derive(Clone, Debug)]
pub struct Zipf {
    n: f64,
    s: f64,
    h_integral_x1: f64,
    h_integral_n: f64,
    threshold: f64,
}

impl Zipf {
    pub fn new(n: u64, s: f64) -> Zipf {
        assert!(n >= 1, "Zipf needs at least one element");
        assert!(s > 0.0, "Zipf exponent must be positive");
        let mut z = Zipf {
            n: n as f64,
            s,
            h_integral_x1: 0.0,
            h_integral_n: 0.0,
            threshold: 0.0,
        };
        z.h_integral_x1 = z.h_integral(1.5) - 1.0;
        z.h_integral_n = z.h_integral(z.n + 0.5);
        z.threshold = 2.0 - z.h_integral_inverse(z.h_integral(2.5) - z.h(2.0));
        z
    }

    /// A rank in `1..=n`; rank 1 is the most frequent.
    pub fn sample(&self, rng: &mut Rng) -> u64 {
        // The acceptance rate is above 90% for any s and n; the bound only
        // guarantees termination.
        let mut k = 1.0;
        for _ in 0..64 {
            let u = self.h_integral_n + rng.unit() * (self.h_integral_x1 - self.h_integral_n);
            let x = self.h_integral_inverse(u);
            k = (x + 0.5).floor().clamp(1.0, self.n);
            if k - x <= self.threshold || u >= self.h_integral(k + 0.5) - self.h(k) {
                break;
            }
        }
        k as u64
    }

    fn h(&self, x: f64) -> f64 {
        (-self.s * x.ln()).exp()
    }

    fn h_integral(&self, x: f64) -> f64 {
        let log_x = x.ln();
        helper2((1.0 - self.s) * log_x) * log_x
    }

    fn h_integral_inverse(&self, x: f64) -> f64 {
        let t = (x * (1.0 - self.s)).max(-1.0);
        (helper1(t) * x).exp()
    }
}

/// ln(1+x)/x, accurate near 0.
fn helper1(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.ln_1p() / x
    } else {
        1.0 - x * (0.5 - x * (1.0 / 3.0 - 0.25 * x))
    }
}

/// (e^x - 1)/x, accurate near 0.
fn helper2(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.exp_m1() / x
    } else {
        1.0 + x * 0.5 * (1.0 + x * (1.0 / 3.0) * (1.0 + 0.25 * x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut rng = Rng::new(7);
        let mut seen = [0u32; 10];
        for _ in 0..10_000 {
            seen[rng.below(10) as usize] += 1;
        }
        for &c in &seen {
            assert!((800..1200).contains(&c), "{seen:?}");
        }
    }

    #[test]
    fn unit_is_in_zero_one() {
        let mut rng = Rng::new(1);
        for _ in 0..10_000 {
            let u = rng.unit();
            assert!((0.0..1.0).contains(&u));
        }
    }

    #[test]
    fn zipf_matches_the_exact_distribution() {
        let n = 1000u64;
        let s = 0.99;
        let z = Zipf::new(n, s);
        let mut rng = Rng::new(42);
        let draws = 200_000;
        let mut counts = vec![0u32; n as usize + 1];
        for _ in 0..draws {
            let k = z.sample(&mut rng);
            assert!((1..=n).contains(&k));
            counts[k as usize] += 1;
        }
        let norm: f64 = (1..=n).map(|k| (k as f64).powf(-s)).sum();
        for k in [1u64, 2, 3, 10, 100] {
            let expected = draws as f64 * (k as f64).powf(-s) / norm;
            let got = counts[k as usize] as f64;
            let tolerance = 5.0 * expected.sqrt() + 0.02 * expected;
            assert!(
                (got - expected).abs() < tolerance,
                "rank {k}: got {got}, expected {expected:.0}"
            );
        }
    }

    #[test]
    fn zipf_of_one_element_is_always_one() {
        let z = Zipf::new(1, 0.99);
        let mut rng = Rng::new(3);
        for _ in 0..100 {
            assert_eq!(z.sample(&mut rng), 1);
        }
    }

    #[test]
    fn zipf_handles_large_key_spaces() {
        let z = Zipf::new(10_000_000, 0.99);
        let mut rng = Rng::new(5);
        let mut top = 0;
        for _ in 0..10_000 {
            let k = z.sample(&mut rng);
            assert!((1..=10_000_000).contains(&k));
            if k <= 10 {
                top += 1;
            }
        }
        // Ranks 1..=10 carry about 17% of the mass for s = 0.99, n = 1e7.
        assert!((1200..2200).contains(&top), "top-10 share {top}");
    }
}
