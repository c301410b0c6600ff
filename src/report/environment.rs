//! What machine and build produced a report.

use sysinfo::System;

use super::schema::{DeviceInfo, Environment};
use crate::corpus::pdfium::PdfiumInfo;
use crate::models::device::{DeviceSpec, candle_features, cpu_threads};

pub fn build_profile() -> &'static str {
    if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    }
}

/// candle-core's version, as locked in Cargo.lock at build time.
const CANDLE_VERSION: &str = "0.11";

pub fn collect(device: DeviceSpec, pdfium: PdfiumInfo) -> Environment {
    let cpu_model = System::new_with_specifics(
        sysinfo::RefreshKind::nothing().with_cpu(sysinfo::CpuRefreshKind::nothing()),
    )
    .ok()
    .and_then(|sys| sys.cpus().first().map(|c| c.brand().trim().to_string()))
    .filter(|s| !s.is_empty())
    .unwrap_or_else(|| "unknown".into());
    let kind = match device {
        DeviceSpec::Cpu => "cpu",
        DeviceSpec::Cuda(_) => "cuda",
        DeviceSpec::Metal(_) => "metal",
    };
    let name = match device {
        DeviceSpec::Cpu => cpu_model.clone(),
        _ => device.to_string(),
    };
    Environment {
        pipebench_version: env!("CARGO_PKG_VERSION").to_string(),
        git_sha: env!("PIPEBENCH_GIT_SHA").to_string(),
        build_profile: build_profile().to_string(),
        rustc: env!("PIPEBENCH_RUSTC").to_string(),
        os: std::env::consts::OS.to_string(),
        os_version: System::long_os_version().unwrap_or_default(),
        arch: std::env::consts::ARCH.to_string(),
        hostname: System::host_name().unwrap_or_default(),
        cpu_model,
        cpu_cores_physical: System::physical_core_count().ok(),
        cpu_cores_logical: std::thread::available_parallelism().map_or(1, |n| n.get()),
        threads: cpu_threads(),
        workers: 1,
        device: DeviceInfo {
            spec: device.to_string(),
            kind: kind.to_string(),
            name,
            driver: None,
        },
        candle_version: CANDLE_VERSION.to_string(),
        candle_features: candle_features(),
        pdfium,
    }
}

/// The environment as a run used it: its model workers and their threads (the plan's
/// `device`; without `device.threads`, the process's threads).
pub fn for_plan(mut env: Environment, plan: &crate::plan::RunPlan) -> Environment {
    env.workers = plan.device.workers;
    if let Some(t) = plan.device.threads {
        env.threads = t;
    }
    env
}

/// `2 threads`, or `2 workers × 1 thread` with several model workers.
pub fn threads_label(env: &Environment) -> String {
    let threads = match env.threads {
        1 => "1 thread".to_string(),
        n => format!("{n} threads"),
    };
    match env.workers {
        0 | 1 => threads,
        w => format!("{w} workers × {threads}"),
    }
}
