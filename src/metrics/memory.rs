//! The memory sampler: a thread that samples process, system and accelerator memory at a fixed
//! interval until stopped.
//!
//! Process RSS comes from sysinfo; the peak RSS from `getrusage` (the kernel's high-water mark,
//! which sampling can miss). Render worker processes are sampled too (`children_rss_bytes`),
//! since their memory is part of what a strategy costs.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use candle_core::Device;
use crossbeam_channel::{Sender, bounded};
use sysinfo::{MemoryRefreshKind, Pid, ProcessRefreshKind, ProcessesToUpdate, RefreshKind, System};

use super::Clock;

/// One sample.
#[derive(
    Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
pub struct MemorySample {
    /// Milliseconds since the run started.
    pub t_ms: f64,
    pub rss_bytes: u64,
    /// Sum of the render worker processes' RSS.
    pub children_rss_bytes: u64,
    pub system_used_bytes: u64,
    pub system_available_bytes: u64,
    pub swap_used_bytes: u64,
    /// Accelerator memory in use (CUDA: device-wide; Metal: allocated by this process).
    pub accelerator_used_bytes: Option<u64>,
}

/// Everything the sampler saw.
#[derive(Debug, Clone, Default)]
pub struct MemoryTrace {
    pub samples: Vec<MemorySample>,
    pub system_total_bytes: u64,
    pub swap_total_bytes: u64,
    /// CUDA: device total; Metal: recommended max working set.
    pub accelerator_total_bytes: Option<u64>,
    /// Kernel high-water mark of this process's RSS.
    pub peak_rss_bytes: u64,
}

/// Process ids whose RSS counts as the run's children (render workers).
pub type ChildPids = Arc<Mutex<Vec<u32>>>;

pub struct MemorySampler {
    stop: Sender<()>,
    handle: JoinHandle<MemoryTrace>,
}

impl MemorySampler {
    /// Starts sampling; with `live`, every sample is also handed to the TUI's board.
    pub fn start(
        clock: Clock,
        interval: Duration,
        device: Device,
        children: ChildPids,
        live: Option<Arc<super::live::LiveBoard>>,
    ) -> Self {
        let (stop, stop_rx) = bounded::<()>(1);
        reset_peak_rss();
        let handle = std::thread::Builder::new()
            .name("pipebench-memory".into())
            .spawn(move || {
                let mut probe = Probe::new(device, children);
                let mut trace = MemoryTrace::default();
                let accel_total =
                    crate::models::device::accelerator_memory(&probe.device).map(|(_, t)| t);
                loop {
                    let sample = probe.sample(&clock);
                    if let Some(live) = &live {
                        live.on_memory(&sample, probe.sys.total_memory(), accel_total);
                    }
                    trace.samples.push(sample);
                    match stop_rx.recv_timeout(interval) {
                        Err(crossbeam_channel::RecvTimeoutError::Timeout) => continue,
                        _ => break,
                    }
                }
                // One last sample so the end of the run is always covered.
                trace.samples.push(probe.sample(&clock));
                trace.system_total_bytes = probe.sys.total_memory();
                trace.swap_total_bytes = probe.sys.total_swap();
                trace.accelerator_total_bytes =
                    crate::models::device::accelerator_memory(&probe.device).map(|(_, t)| t);
                trace.peak_rss_bytes = peak_rss_bytes();
                trace
            })
            .expect("spawning the memory sampler thread");
        Self { stop, handle }
    }

    pub fn finish(self) -> MemoryTrace {
        let _ = self.stop.send(());
        self.handle.join().unwrap_or_default()
    }
}

struct Probe {
    sys: System,
    pid: Pid,
    device: Device,
    children: ChildPids,
}

impl Probe {
    fn new(device: Device, children: ChildPids) -> Self {
        // sysinfo 0.40 can fail to initialise (no /proc, say); an empty System then reads zeros,
        // which the report shows rather than aborting the run.
        let sys = System::new_with_specifics(
            RefreshKind::nothing().with_memory(MemoryRefreshKind::everything()),
        )
        .or_else(|_| System::new_with_specifics(RefreshKind::nothing()))
        .expect("sysinfo::System with nothing to refresh cannot fail");
        Self {
            sys,
            pid: Pid::from_u32(std::process::id()),
            device,
            children,
        }
    }

    fn sample(&mut self, clock: &Clock) -> MemorySample {
        self.sys.refresh_memory();
        let children: Vec<Pid> = self
            .children
            .lock()
            .map(|v| v.iter().map(|p| Pid::from_u32(*p)).collect())
            .unwrap_or_default();
        let mut pids = vec![self.pid];
        pids.extend(&children);
        self.sys.refresh_processes_specifics(
            ProcessesToUpdate::Some(&pids),
            true,
            ProcessRefreshKind::nothing().with_memory(),
        );
        let rss = self.sys.process(self.pid).map_or(0, |p| p.memory());
        let children_rss = children
            .iter()
            .filter_map(|p| self.sys.process(*p))
            .map(|p| p.memory())
            .sum();
        MemorySample {
            t_ms: clock.now_ns() as f64 / 1e6,
            rss_bytes: rss,
            children_rss_bytes: children_rss,
            system_used_bytes: self.sys.used_memory(),
            system_available_bytes: self.sys.available_memory(),
            swap_used_bytes: self.sys.used_swap(),
            accelerator_used_bytes: crate::models::device::accelerator_memory(&self.device)
                .map(|(u, _)| u),
        }
    }
}

/// Resets the kernel's high-water mark of this process's resident set to its current size, so
/// a run's peak is its own and not an earlier run's in the same process (`pipebench tui` runs
/// several). Linux only (`/proc/self/clear_refs`); elsewhere the mark is the process's.
///
/// First the allocator gives back what it holds free (`malloc_trim`): `keep_freed_memory` keeps
/// freed buffers for speed, so without this an earlier run's peak would stay resident and be
/// counted again.
pub fn reset_peak_rss() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
    #[cfg(target_os = "linux")]
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The kernel's high-water mark of this process's resident set: `VmHWM` on Linux (which
/// [`reset_peak_rss`] resets), `getrusage` elsewhere.
pub fn peak_rss_bytes() -> u64 {
    #[cfg(target_os = "linux")]
    if let Some(kib) = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
    {
        return kib * 1024;
    }
    // SAFETY: getrusage only writes into the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    if rc != 0 {
        return 0;
    }
    let v = ru.ru_maxrss.max(0) as u64;
    // Linux reports KiB, macOS bytes.
    if cfg!(target_os = "macos") {
        v
    } else {
        v * 1024
    }
}

/// Reduces a series to at most `max` points, keeping in each bucket the sample with the largest
/// total RSS, so peaks survive downsampling.
pub fn downsample(samples: &[MemorySample], max: usize) -> Vec<MemorySample> {
    if samples.len() <= max || max == 0 {
        return samples.to_vec();
    }
    let per = samples.len().div_ceil(max);
    samples
        .chunks(per)
        .filter_map(|c| {
            c.iter()
                .max_by_key(|s| s.rss_bytes + s.children_rss_bytes)
                .copied()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(t: f64, rss: u64) -> MemorySample {
        MemorySample {
            t_ms: t,
            rss_bytes: rss,
            children_rss_bytes: 0,
            system_used_bytes: 0,
            system_available_bytes: 0,
            swap_used_bytes: 0,
            accelerator_used_bytes: None,
        }
    }

    #[test]
    fn downsampling_keeps_the_peak() {
        let v: Vec<_> = (0..1000)
            .map(|i| s(i as f64, if i == 537 { 999 } else { 1 }))
            .collect();
        let d = downsample(&v, 100);
        assert!(d.len() <= 100);
        assert!(d.iter().any(|x| x.rss_bytes == 999));
    }

    #[test]
    fn sampler_sees_this_process() {
        let m = MemorySampler::start(
            Clock::start(),
            Duration::from_millis(5),
            Device::Cpu,
            ChildPids::default(),
            None,
        );
        std::thread::sleep(Duration::from_millis(30));
        let t = m.finish();
        assert!(t.samples.len() >= 2);
        assert!(t.samples.iter().all(|x| x.rss_bytes > 0));
        assert!(t.system_total_bytes > 0);
        assert!(t.peak_rss_bytes >= t.samples[0].rss_bytes / 2);
    }
}
