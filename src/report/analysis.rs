//! What a run's timings say beyond their statistics: the steady-state rate after warm-up,
//! how many pages were in flight, and which resource bounds the run (the bottleneck).

use std::collections::BTreeMap;

use super::ms;
use super::schema::{Bottleneck, ResourceReport};

/// Pages per second after warm-up, and the warm-up page count: the first tenth of the pages
/// (at least one) are warm-up; the rate is the rest over the time from the last warm-up page's
/// completion to the last page's. (0, 0) with fewer than three pages.
pub fn steady_state(done_ns: impl Iterator<Item = u64>) -> (f64, u64) {
    let mut done: Vec<u64> = done_ns.collect();
    if done.len() < 3 {
        return (0.0, 0);
    }
    done.sort_unstable();
    let k = (done.len() / 10).max(1);
    let span = done[done.len() - 1].saturating_sub(done[k - 1]);
    if span == 0 {
        return (0.0, k as u64);
    }
    ((done.len() - k) as f64 / (span as f64 / 1e9), k as u64)
}

/// How many intervals `[from, to)` are open, after each start or end, in time order: the
/// occupancy of a queue or of the pipeline over time. Ends sort before starts at the same
/// instant: a page done as another is admitted does not count twice.
pub fn occupancy(intervals: impl Iterator<Item = (u64, u64)>) -> Vec<(u64, u64)> {
    let mut events: Vec<(u64, i64)> = intervals
        .flat_map(|(a, d)| [(a, 1), (d.max(a), -1)])
        .collect();
    events.sort();
    let mut now = 0i64;
    events
        .into_iter()
        .map(|(t, step)| {
            now += step;
            (t, now.max(0) as u64)
        })
        .collect()
}

/// The most intervals `[admitted, done)` that overlap at one instant.
pub fn max_in_flight(intervals: impl Iterator<Item = (u64, u64)>) -> u64 {
    occupancy(intervals)
        .into_iter()
        .map(|(_, n)| n)
        .max()
        .unwrap_or(0)
}

/// Busy time per resource kind, the ideal bound and the efficiency (see [`Bottleneck`]).
/// `device_workers` is the run's model workers: the device resource counts every one of them,
/// even one that never got a batch (its idle time is capacity the run left unused).
pub fn bottleneck(
    workers: &BTreeMap<crate::metrics::span::WorkerId, crate::metrics::span::WorkerAccum>,
    wall_ns: u64,
    device_workers: usize,
) -> Bottleneck {
    let mut by_kind: BTreeMap<String, (u64, u64, u64, u64)> = BTreeMap::new();
    for (id, w) in workers {
        let e = by_kind.entry(id.kind.to_string()).or_default();
        e.0 += 1;
        e.1 += w.busy_ns;
        e.2 += w.idle_ns;
        e.3 = e.3.max(w.max_gap_ns);
    }
    if let Some(e) = by_kind.get_mut(&crate::metrics::span::WorkerKind::Device.to_string()) {
        e.0 = e.0.max(device_workers as u64);
    }
    let resources: Vec<ResourceReport> = by_kind
        .iter()
        .map(|(kind, (n, busy, idle, gap))| ResourceReport {
            resource: kind.clone(),
            workers: *n,
            busy_ms: ms(*busy),
            utilization: if wall_ns == 0 {
                0.0
            } else {
                *busy as f64 / (wall_ns as f64 * *n as f64)
            },
            idle_gaps_ms: ms(*idle),
            max_idle_gap_ms: ms(*gap),
        })
        .collect();
    let (bound_resource, bound_ms) = resources
        .iter()
        .map(|r| (r.resource.clone(), r.busy_ms / r.workers.max(1) as f64))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap_or_default();
    Bottleneck {
        efficiency: if wall_ns == 0 {
            0.0
        } else {
            bound_ms / ms(wall_ns)
        },
        resources,
        bound_ms,
        bound_resource,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steady_state_leaves_the_warm_up_out() {
        // A slow first page (5 s), then one page a second.
        let done = [
            5_000_000_000u64,
            6e9 as u64,
            7e9 as u64,
            8e9 as u64,
            9e9 as u64,
        ];
        let (rate, warmup) = steady_state(done.into_iter());
        assert_eq!(warmup, 1);
        assert!((rate - 1.0).abs() < 1e-9, "{rate}");
        assert_eq!(steady_state([1u64, 2].into_iter()), (0.0, 0));
    }

    #[test]
    fn pages_in_flight_counts_overlapping_intervals() {
        assert_eq!(max_in_flight(std::iter::empty()), 0);
        // Back to back (one done as the next is admitted): one at a time.
        assert_eq!(max_in_flight([(0, 10), (10, 20), (20, 30)].into_iter()), 1);
        assert_eq!(
            max_in_flight([(0, 10), (5, 20), (6, 7), (15, 30)].into_iter()),
            3
        );
    }
}
