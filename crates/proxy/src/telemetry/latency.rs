//! The per-tenant command latency histogram: exported to Prometheus and read
//! here for the percentiles `/tenants` and the status page show. Observed
//! with two relaxed atomic adds; prometheus-client's own histogram takes a
//! mutex per observation, once per reply batch on the hot path.

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// 25 µs to about 1.6 s: fine enough for sub-millisecond work.
const START: f64 = 0.000_025;
const BUCKETS: usize = 17;

/// Upper bounds, computed as prometheus-client's `exponential_buckets` does
/// (so the `le` labels read as they did with its histogram).
fn bounds() -> &'static [f64; BUCKETS] {
    static BOUNDS: OnceLock<[f64; BUCKETS]> = OnceLock::new();
    BOUNDS.get_or_init(|| {
        let mut bound = START;
        std::array::from_fn(|_| {
            let b = bound;
            bound *= 2.0;
            b
        })
    })
}

/// Clones share their counts (a family hands out clones).
#[derive(Clone, Debug, Default)]
pub struct LatencyHistogram(Arc<Counts>);

#[derive(Debug, Default)]
struct Counts {
    /// Per bucket, the last past every bound (`+Inf`).
    buckets: [AtomicU64; BUCKETS + 1],
    sum_nanos: AtomicU64,
}

impl LatencyHistogram {
    pub fn observe(&self, seconds: f64, n: u64) {
        let i = bounds().iter().position(|&b| seconds <= b).unwrap_or(BUCKETS);
        self.0.buckets[i].fetch_add(n, Ordering::Relaxed);
        let nanos = (seconds.max(0.0) * 1e9) as u64;
        self.0.sum_nanos.fetch_add(nanos.saturating_mul(n), Ordering::Relaxed);
    }

    fn counts(&self) -> [u64; BUCKETS + 1] {
        std::array::from_fn(|i| self.0.buckets[i].load(Ordering::Relaxed))
    }

    /// The upper bound of the bucket holding quantile `q`, in seconds.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let counts = self.counts();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = (q * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(bounds().get(i).copied().unwrap_or(f64::INFINITY));
            }
        }
        None
    }
}

impl TypedMetric for LatencyHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for LatencyHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let counts = self.counts();
        // Per-bucket counts: the encoder accumulates them and writes `+Inf`.
        let buckets: Vec<(f64, u64)> =
            counts.iter().enumerate().map(|(i, &c)| (bounds().get(i).copied().unwrap_or(f64::INFINITY), c)).collect();
        let sum = self.0.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, counts.iter().sum(), &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::LatencyHistogram;
    use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
    use prometheus_client::registry::Registry;

    fn text(registry: &Registry) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, registry).unwrap();
        out
    }

    #[test]
    fn exports_what_prometheus_clients_histogram_exports() {
        let ours = LatencyHistogram::default();
        let theirs = Histogram::new(exponential_buckets(0.000_025, 2.0, 17));
        for s in [0.00001, 0.000025, 0.00003, 0.0004, 0.002, 0.5, 3.0, 0.000_026] {
            ours.observe(s, 2);
            theirs.observe(s);
            theirs.observe(s);
        }
        let (mut a, mut b) = (Registry::default(), Registry::default());
        a.register("d", "h", ours.clone());
        b.register("d", "h", theirs);
        let (a, b) = (text(&a), text(&b));
        let without_sum = |t: &str| t.lines().filter(|l| !l.starts_with("d_sum")).collect::<Vec<_>>().join("\n");
        assert_eq!(without_sum(&a), without_sum(&b));
        // The sum is kept in nanoseconds.
        let sum = |t: &str| t.lines().find_map(|l| l.strip_prefix("d_sum ")).unwrap().parse::<f64>().unwrap();
        assert!((sum(&a) - sum(&b)).abs() < 1e-6, "{a}\n{b}");
        // 16 observations: the 8th is in the 50 µs bucket, the 10th in the 400 µs one.
        assert_eq!(ours.quantile(0.5), Some(0.00005));
        assert_eq!(ours.quantile(0.6), Some(0.0004));
        assert_eq!(ours.quantile(1.0), Some(f64::INFINITY));
        assert_eq!(LatencyHistogram::default().quantile(0.5), None);
    }
}
