//! Devices: `cpu`, `cuda[:N]` (feature `cuda`), `metal[:N]` (feature `metal`), and CPU threads.
//!
//! candle is lazy on accelerators: work is queued and runs later, so the executor calls
//! `Device::synchronize` before reading the clock on both sides of a stage call. On CPU it is a no-op.

use candle_core::Device;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSpec {
    Cpu,
    Cuda(usize),
    Metal(usize),
}

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("unknown device `{0}`: expected cpu, cuda, cuda:N, metal or metal:N")]
    Parse(String),
    #[error(
        "this pipebench was built without {feature} support\n  fix: rebuild with `cargo build --release --features {feature}`"
    )]
    NotBuilt { feature: &'static str },
    /// `error` is not a `source`: the message shows it already, and `{:#}` would repeat it.
    #[error("could not open {spec}: {error}\n  fix: {hint}")]
    Open {
        spec: String,
        error: candle_core::Error,
        hint: &'static str,
    },
}

impl std::str::FromStr for DeviceSpec {
    type Err = DeviceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, ordinal) = match s.split_once(':') {
            Some((n, o)) => (
                n,
                o.parse::<usize>()
                    .map_err(|_| DeviceError::Parse(s.to_string()))?,
            ),
            None => (s, 0),
        };
        match name {
            "cpu" if ordinal == 0 => Ok(DeviceSpec::Cpu),
            "cuda" => Ok(DeviceSpec::Cuda(ordinal)),
            "metal" => Ok(DeviceSpec::Metal(ordinal)),
            _ => Err(DeviceError::Parse(s.to_string())),
        }
    }
}

impl std::fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceSpec::Cpu => write!(f, "cpu"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
            DeviceSpec::Metal(n) => write!(f, "metal:{n}"),
        }
    }
}

/// An accelerator backend: the cargo feature it needs, whether this binary has it, how candle
/// opens it, and what to check when a device does not open. CUDA and Metal go through the same
/// code ([`open`], [`candle_features`]); only the memory query differs, since candle has no
/// common API for it ([`accelerator_memory`]).
struct Backend {
    feature: &'static str,
    built: bool,
    open: fn(usize) -> candle_core::Result<Device>,
    hint: &'static str,
}

/// The CUDA build is made against CUDA 13.0 (`scripts/cuda-build.sh`), whose runtime needs
/// driver 580 or newer; candle's kernels are PTX that the driver compiles, so an older driver
/// refuses them even where the libraries load.
const CUDA: Backend = Backend {
    feature: "cuda",
    built: cfg!(feature = "cuda"),
    open: Device::new_cuda,
    hint: "check that `nvidia-smi` lists the GPU with driver 580 or newer (CUDA 13.0); the \
           CUDA build needs the NVIDIA driver and the CUDA 13 libraries (README: \"CUDA and \
           the GPU check\")",
};

const METAL: Backend = Backend {
    feature: "metal",
    built: cfg!(feature = "metal"),
    open: Device::new_metal,
    hint: "Metal needs macOS on a Mac with a Metal GPU",
};

/// Opens the device.
pub fn open(spec: DeviceSpec) -> Result<Device, DeviceError> {
    let (backend, ordinal) = match spec {
        DeviceSpec::Cpu => return Ok(Device::Cpu),
        DeviceSpec::Cuda(n) => (&CUDA, n),
        DeviceSpec::Metal(n) => (&METAL, n),
    };
    if !backend.built {
        return Err(DeviceError::NotBuilt {
            feature: backend.feature,
        });
    }
    (backend.open)(ordinal).map_err(|error| DeviceError::Open {
        spec: spec.to_string(),
        error,
        hint: backend.hint,
    })
}

/// Keeps freed model buffers in the process instead of returning them to the kernel.
///
/// Why: glibc serves large allocations (every feature map of a page-sized input) with `mmap`
/// and unmaps them on free, so each forward pass page-faults its activations in again; that
/// cost 5–8 % of PicoDet's and SLANet's CPU time (`benches/layout_table.rs`). With a high mmap
/// threshold and no trimming, freed maps are reused from the heap, as an inference runtime's
/// arena would. Resident memory then stays near its peak, and the memory report shows that.
/// A no-op outside Linux with glibc.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called before any model allocates.
    unsafe {
        // glibc caps the mmap threshold at 32 MiB on 64-bit.
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}

/// How long candle's element-wise worker threads spin for more work before they sleep, in
/// `spin_loop` iterations (candle's default is 25 000).
///
/// Why: candle 0.11 runs its element-wise ops (bias adds, layer norm steps, activations) on a
/// pool of its own whose workers spin after every op, while the GEMMs that follow run on
/// rayon's threads. On two cores each spin took a core from the next matrix product: Table
/// Transformer used 5 % more CPU time and ran 4–10 % slower per table with the default
/// (`perf stat` task-clock over `bench-seed --models tatr-structure`). A short spin still
/// catches back-to-back ops; a user's `CANDLE_BARRIER_POOL_SPIN_LIMIT` wins.
const CANDLE_SPIN_LIMIT: u32 = 200;

/// Sets the CPU thread count for candle/rayon, and how long candle's pool spins
/// ([`CANDLE_SPIN_LIMIT`]). Call first thing in `main`, before any thread pool exists.
pub fn apply_thread_count(threads: Option<usize>) {
    // SAFETY: called at the start of main, before any other thread is spawned, so nothing
    // reads the environment concurrently.
    unsafe {
        if let Some(n) = threads.filter(|n| *n > 0) {
            std::env::set_var("RAYON_NUM_THREADS", n.to_string());
            std::env::set_var("CANDLE_NUM_THREADS", n.to_string());
        }
        if std::env::var_os("CANDLE_BARRIER_POOL_SPIN_LIMIT").is_none() {
            std::env::set_var(
                "CANDLE_BARRIER_POOL_SPIN_LIMIT",
                CANDLE_SPIN_LIMIT.to_string(),
            );
        }
    }
}

/// CPU threads candle's kernels use.
pub fn cpu_threads() -> usize {
    candle_core::utils::get_num_threads()
}

/// CPU threads our own kernels split their work across: on a model worker's thread pool
/// (`device.threads`, see `pipeline::workers`) that pool's size, elsewhere candle's count
/// (`--threads`, else the physical cores) — the same value as before workers existed.
pub fn kernel_threads() -> usize {
    if rayon::current_thread_index().is_some() {
        rayon::current_num_threads()
    } else {
        cpu_threads()
    }
}

/// The candle features this binary was built with.
pub fn candle_features() -> Vec<String> {
    let mut f: Vec<String> = [&CUDA, &METAL]
        .into_iter()
        .filter(|b| b.built)
        .map(|b| b.feature.to_string())
        .collect();
    if candle_core::utils::has_mkl() {
        f.push("mkl".to_string());
    }
    if candle_core::utils::has_accelerate() {
        f.push("accelerate".to_string());
    }
    if candle_core::utils::with_avx() {
        f.push("avx".to_string());
    }
    f
}

/// Accelerator memory (used, total) in bytes, where the device can say.
///
/// CUDA: device-wide free/total from the driver (counts other processes too). Metal: bytes
/// allocated by this process's device vs the recommended working set (unified memory).
pub fn accelerator_memory(device: &Device) -> Option<(u64, u64)> {
    match device {
        Device::Cpu => None,
        #[cfg(feature = "cuda")]
        Device::Cuda(_) => {
            let cd = device.as_cuda_device().ok()?;
            let (free, total) = cd.cuda_stream().context().mem_get_info().ok()?;
            Some(((total - free) as u64, total as u64))
        }
        #[cfg(feature = "metal")]
        Device::Metal(_) => {
            let md = device.as_metal_device().ok()?;
            Some((
                md.current_allocated_size() as u64,
                md.recommended_max_working_set_size() as u64,
            ))
        }
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_device_names() {
        assert_eq!("cpu".parse::<DeviceSpec>().ok(), Some(DeviceSpec::Cpu));
        assert_eq!("cuda".parse::<DeviceSpec>().ok(), Some(DeviceSpec::Cuda(0)));
        assert_eq!(
            "cuda:1".parse::<DeviceSpec>().ok(),
            Some(DeviceSpec::Cuda(1))
        );
        assert_eq!(
            "metal".parse::<DeviceSpec>().ok(),
            Some(DeviceSpec::Metal(0))
        );
        assert!("tpu".parse::<DeviceSpec>().is_err());
        assert!("cuda:x".parse::<DeviceSpec>().is_err());
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_feature_says_how_to_fix() {
        let err = open(DeviceSpec::Cuda(0)).expect_err("not built with cuda");
        assert!(err.to_string().contains("--features cuda"), "{err}");
    }
}
