//! Measurement: the run clock, spans and their collector, histograms and summary statistics,
//! and the memory sampler thread.

pub mod histogram;
pub mod live;
pub mod memory;
pub mod span;

use std::time::Instant;

/// The run's monotonic clock: nanoseconds since its origin.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: Instant,
}

impl Clock {
    pub fn start() -> Self {
        Self {
            origin: Instant::now(),
        }
    }

    pub fn now_ns(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }

    pub fn origin(&self) -> Instant {
        self.origin
    }
}
