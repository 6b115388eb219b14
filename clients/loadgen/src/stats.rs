//! Distributions of latency samples. A scenario takes hundreds of samples, not millions, so the
//! percentiles are exact: nearest rank over the sorted samples, no histogram buckets.

use std::fmt;

/// Samples in microseconds, sorted. Signed: a figure that subtracts a designed delay can come
/// out slightly negative when clocks round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Distribution {
    sorted: Vec<i64>,
}

impl Distribution {
    pub fn new(mut samples_us: Vec<i64>) -> Self {
        samples_us.sort_unstable();
        Self { sorted: samples_us }
    }

    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    /// The samples, smallest first.
    pub fn samples(&self) -> &[i64] {
        &self.sorted
    }

    /// The `p`-th percentile (0 < p ≤ 100) by nearest rank: the smallest sample with at least
    /// p % of the samples at or below it. With 100 samples, p99 is the second largest.
    pub fn percentile(&self, p: f64) -> Option<i64> {
        if self.sorted.is_empty() {
            return None;
        }
        let rank = (p / 100.0 * self.sorted.len() as f64).ceil() as usize;
        Some(self.sorted[rank.clamp(1, self.sorted.len()) - 1])
    }

    pub fn min(&self) -> Option<i64> {
        self.sorted.first().copied()
    }

    pub fn max(&self) -> Option<i64> {
        self.sorted.last().copied()
    }
}

/// Microseconds as milliseconds with one decimal: "12.3".
pub fn ms(us: i64) -> String {
    format!("{:.1}", us as f64 / 1000.0)
}

impl fmt::Display for Distribution {
    /// "min 1.0  p50 2.0  p90 3.0  p99 4.0  max 5.0" in milliseconds.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |v: Option<i64>| v.map_or_else(|| "-".to_owned(), ms);
        write!(
            f,
            "min {}  p50 {}  p90 {}  p99 {}  max {}",
            show(self.min()),
            show(self.percentile(50.0)),
            show(self.percentile(90.0)),
            show(self.percentile(99.0)),
            show(self.max())
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let d = Distribution::new((1..=100).rev().collect());
        assert_eq!(d.percentile(50.0), Some(50));
        assert_eq!(d.percentile(90.0), Some(90));
        assert_eq!(d.percentile(99.0), Some(99));
        assert_eq!(d.percentile(100.0), Some(100));
        assert_eq!((d.min(), d.max()), (Some(1), Some(100)));

        let three = Distribution::new(vec![-300, 7_000, 2_500]);
        assert_eq!(three.percentile(50.0), Some(2_500));
        assert_eq!(three.percentile(99.0), Some(7_000));
        assert_eq!(
            three.to_string(),
            "min -0.3  p50 2.5  p90 7.0  p99 7.0  max 7.0"
        );
        assert_eq!(Distribution::new(vec![]).percentile(50.0), None);
    }
}
