//! Model workers (`[device] workers = N`, what Triton Model Analyzer calls instance count):
//! `N` threads that run the model stages, each with a rayon pool of `device.threads` CPU
//! threads, taking batches from the strategy's one scheduler.
//!
//! **One copy of the weights.** Worker 0 holds the stages the session built; the others hold
//! [`Stage::replicate`]s of them, which share the networks behind `Arc`s and keep only their
//! per-call state (profiles, counters) apart. A model that cannot be replicated fails the run
//! before its first page, naming the model.
//!
//! **Threads.** Inside a worker's pool, candle's matrix products and our kernels split their
//! work over that pool only (`models::device::kernel_threads`), so two workers of one thread
//! each run side by side instead of fighting over one process-wide pool. candle's own
//! element-wise pool is process-wide (sized by `--threads`); with one thread per worker, give
//! `--threads 1` too so those ops run on the worker's own thread (see the README's "Model
//! workers").
//!
//! **Why CPU only.** On an accelerator the workers would queue on one device stream, and the
//! executor synchronizes the whole device around each call: the calls would serialize and the
//! timings would include each other's work. Batches are the accelerator's parallelism.
//!
//! One worker with no `device.threads` is exactly the run before workers existed: no pool, the
//! stages run on the calling thread (the main thread: see `streaming_microbatch` for why that
//! matters to the allocator).

use candle_core::Device;

use crate::metrics::span::{WorkerId, WorkerKind};
use crate::models::Stage;
use crate::plan::DevicePlan;
use crate::vocab::StageKind;

/// One model worker: its stages and, with `device.threads`, its thread pool.
pub struct ModelWorker {
    pub id: WorkerId,
    stages: Vec<Box<dyn Stage>>,
    pool: Option<rayon::ThreadPool>,
}

impl ModelWorker {
    /// The worker's stages, in pipeline order.
    pub fn kinds(&self) -> Vec<StageKind> {
        self.stages.iter().map(|s| s.kind()).collect()
    }

    /// Runs `f` with this worker's stages on this worker's threads: inside its pool when it
    /// has one (on one of the pool's threads), else on the calling thread.
    pub fn run<R: Send>(
        &mut self,
        f: impl FnOnce(WorkerId, &mut [Box<dyn Stage>]) -> R + Send,
    ) -> R {
        let (id, pool, stages) = (self.id, &self.pool, &mut self.stages);
        match pool {
            Some(pool) => pool.install(|| f(id, stages)),
            None => f(id, stages),
        }
    }
}

/// The worker with `index`.
pub fn worker_id(index: usize) -> WorkerId {
    WorkerId {
        kind: WorkerKind::Device,
        index: u16::try_from(index).unwrap_or(u16::MAX),
    }
}

/// Makes the plan's workers from the stages built for the run (worker 0 keeps them).
pub fn start(
    stages: Vec<Box<dyn Stage>>,
    plan: &DevicePlan,
    device: &Device,
) -> anyhow::Result<Vec<ModelWorker>> {
    let n = plan.workers.max(1);
    if n > 1 && !device.is_cpu() {
        anyhow::bail!(
            "device.workers = {n}: model workers run on the CPU only (on an accelerator they \
             would share one stream and serialize); set device.workers = 1 and raise the \
             stages' batch_size instead"
        );
    }
    let mut sets = Vec::with_capacity(n);
    for _ in 1..n {
        let copy = stages
            .iter()
            .map(|s| {
                s.replicate().ok_or_else(|| {
                    let m = s.model();
                    anyhow::anyhow!(
                        "model `{}` of stage {} cannot run on several workers: set \
                         device.workers = 1",
                        m.id,
                        m.stage
                    )
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        sets.push(copy);
    }
    sets.insert(0, stages);
    sets.into_iter()
        .enumerate()
        .map(|(i, stages)| {
            let pool = match plan.threads {
                Some(threads) => Some(
                    rayon::ThreadPoolBuilder::new()
                        .num_threads(threads)
                        .thread_name(move |t| format!("pipebench-worker{i}-{t}"))
                        .build()
                        .map_err(|e| {
                            anyhow::anyhow!("model worker {i}: starting its threads: {e}")
                        })?,
                ),
                None => None,
            };
            Ok(ModelWorker {
                id: worker_id(i),
                stages,
                pool,
            })
        })
        .collect()
}

/// Runs `body` on every worker at once, worker 0 on the calling thread and the others on
/// threads of their own, and returns when all are done.
pub fn run_all(workers: &mut [ModelWorker], body: impl Fn(WorkerId, &mut [Box<dyn Stage>]) + Sync) {
    let body = &body;
    let Some((first, rest)) = workers.split_first_mut() else {
        return;
    };
    std::thread::scope(|s| {
        for w in rest {
            s.spawn(move || w.run(body));
        }
        first.run(body);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::null::{NullOptions, NullStage};

    fn null_stages() -> Vec<Box<dyn Stage>> {
        vec![Box::new(NullStage::new(StageKind::Layout, &NullOptions::default())) as Box<dyn Stage>]
    }

    #[test]
    fn one_worker_without_threads_has_no_pool() {
        let workers = start(null_stages(), &DevicePlan::default(), &Device::Cpu).expect("start");
        assert_eq!(workers.len(), 1);
        assert!(workers[0].pool.is_none());
        assert_eq!(workers[0].id, worker_id(0));
    }

    #[test]
    fn workers_get_replicas_and_pools_of_their_threads() {
        let plan = DevicePlan {
            workers: 3,
            threads: Some(2),
        };
        let mut workers = start(null_stages(), &plan, &Device::Cpu).expect("start");
        assert_eq!(workers.len(), 3);
        let seen = std::sync::Mutex::new(Vec::new());
        run_all(&mut workers, |id, stages| {
            assert_eq!(stages.len(), 1);
            assert_eq!(rayon::current_num_threads(), 2);
            assert_eq!(crate::models::device::kernel_threads(), 2);
            seen.lock().expect("lock").push(id.index);
        });
        let mut seen = seen.into_inner().expect("lock");
        seen.sort_unstable();
        assert_eq!(seen, vec![0, 1, 2]);
    }

    struct Single;

    impl Stage for Single {
        fn kind(&self) -> StageKind {
            StageKind::Ocr
        }
        fn model(&self) -> crate::models::ModelInfo {
            crate::models::ModelInfo {
                stage: StageKind::Ocr,
                id: "single".into(),
                is_test_stage: true,
                untrained: false,
                fallback: None,
                weights_sha256: None,
            }
        }
        fn process(
            &mut self,
            _: &mut [crate::page::PageWork],
        ) -> Result<(), crate::models::StageError> {
            Ok(())
        }
    }

    #[test]
    fn a_model_that_cannot_be_replicated_is_named() {
        let plan = DevicePlan {
            workers: 2,
            threads: Some(1),
        };
        let err = start(vec![Box::new(Single)], &plan, &Device::Cpu)
            .err()
            .expect("no replica");
        assert!(
            err.to_string().contains("model `single` of stage ocr"),
            "{err}"
        );
    }
}
