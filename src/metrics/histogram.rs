//! Latency histograms (HdrHistogram, nanoseconds) and their summaries.

use base64::Engine as _;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Serializer as _, V2DeflateSerializer};

/// Significant figures kept: 3 digits is HdrHistogram's usual choice (0.1 % value error).
const SIGFIG: u8 = 3;

/// A nanosecond latency histogram that grows to fit any value.
#[derive(Debug, Clone)]
pub struct LatencyHistogram {
    h: Histogram<u64>,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyHistogram {
    pub fn new() -> Self {
        let mut h = Histogram::new(SIGFIG).expect("3 significant figures is valid");
        h.auto(true);
        Self { h }
    }

    pub fn record(&mut self, ns: u64) {
        self.record_n(ns, 1);
    }

    pub fn record_n(&mut self, ns: u64, n: u64) {
        // auto-resize means only values beyond u64 range could fail; clamp to be safe.
        let _ = self.h.record_n(ns.max(1), n);
    }

    pub fn len(&self) -> u64 {
        self.h.len()
    }

    pub fn is_empty(&self) -> bool {
        self.h.is_empty()
    }

    pub fn inner(&self) -> &Histogram<u64> {
        &self.h
    }

    /// Value at quantile `q` (0..=1), in nanoseconds; 0 when empty.
    pub fn quantile_ns(&self, q: f64) -> u64 {
        if self.h.is_empty() {
            0
        } else {
            self.h.value_at_quantile(q)
        }
    }

    /// HdrHistogram V2 + deflate, base64: mergeable across runs, readable by other HdrHistogram
    /// implementations.
    pub fn to_base64(&self) -> String {
        let mut buf = Vec::new();
        if V2DeflateSerializer::new()
            .serialize(&self.h, &mut buf)
            .is_err()
        {
            return String::new();
        }
        base64::engine::general_purpose::STANDARD.encode(buf)
    }

    pub fn from_base64(s: &str) -> Option<Self> {
        let bytes = base64::engine::general_purpose::STANDARD.decode(s).ok()?;
        let mut h: Histogram<u64> = hdrhistogram::serialization::Deserializer::new()
            .deserialize(&mut &bytes[..])
            .ok()?;
        h.auto(true);
        Some(Self { h })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_and_round_trip() {
        let mut h = LatencyHistogram::new();
        for v in 1..=1000u64 {
            h.record(v * 1_000);
        }
        let p50 = h.quantile_ns(0.5) as f64;
        assert!((p50 - 500_000.0).abs() / 500_000.0 < 0.01, "{p50}");
        let back = LatencyHistogram::from_base64(&h.to_base64()).expect("decodes");
        assert_eq!(back.len(), 1000);
        assert_eq!(back.quantile_ns(0.99), h.quantile_ns(0.99));
    }

    #[test]
    fn empty_histogram_reports_zero() {
        assert_eq!(LatencyHistogram::new().quantile_ns(0.99), 0);
    }

    #[test]
    fn grows_for_long_values() {
        let mut h = LatencyHistogram::new();
        h.record(3_600_000_000_000); // one hour
        assert!(h.quantile_ns(1.0) >= 3_590_000_000_000);
    }
}
