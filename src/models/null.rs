//! The `null` test stage: deterministic, computes nothing, optionally sleeps and optionally
//! fails on named pages. For tests and for measuring pipebench's own overhead; never a default
//! for real work, and reports mark it (`is_test_stage`).

use std::time::Duration;

use super::{FailureKind, ModelInfo, Stage, StageError, StageKind};
use crate::page::PageWork;

/// The null stage's options: a fixed cost and injected failures, for tests.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NullOptions {
    /// Milliseconds to sleep per page (a deterministic fake workload).
    pub sleep_ms: f64,
    /// Page ids (`doc.pdf#p2`) on which the stage fails.
    pub fail_pages: Vec<String>,
}

impl super::registry::ModelOptions for NullOptions {
    fn check(&self) -> Result<(), (&'static str, String)> {
        if !(self.sleep_ms.is_finite() && self.sleep_ms >= 0.0) {
            return Err((
                "sleep_ms",
                format!("must be a finite number ≥ 0, got {}", self.sleep_ms),
            ));
        }
        Ok(())
    }
}

/// The registry's builder of `null`.
pub fn build(req: &super::registry::BuildRequest) -> Result<Box<dyn Stage>, StageError> {
    Ok(Box::new(NullStage::new(req.kind, &req.options()?)))
}

#[derive(Clone)]
pub struct NullStage {
    kind: StageKind,
    sleep: Duration,
    fail_pages: Vec<String>,
}

impl NullStage {
    pub fn new(kind: StageKind, options: &NullOptions) -> Self {
        Self {
            kind,
            sleep: Duration::from_secs_f64(options.sleep_ms / 1000.0),
            fail_pages: options.fail_pages.clone(),
        }
    }
}

impl Stage for NullStage {
    fn kind(&self) -> StageKind {
        self.kind
    }

    fn replicate(&self) -> Option<Box<dyn Stage>> {
        Some(Box::new(self.clone()))
    }

    fn model(&self) -> ModelInfo {
        ModelInfo {
            stage: self.kind,
            id: "null".into(),
            is_test_stage: true,
            untrained: false,
            fallback: None,
            weights_sha256: None,
        }
    }

    fn process(&mut self, batch: &mut [PageWork]) -> Result<(), StageError> {
        if !self.sleep.is_zero() {
            std::thread::sleep(self.sleep * batch.len() as u32);
        }
        if let Some(p) = batch
            .iter()
            .find(|p| self.fail_pages.iter().any(|f| f == &*p.id))
        {
            return Err(StageError::new(
                FailureKind::Injected,
                format!("null stage told to fail on {}", p.id),
            ));
        }
        Ok(())
    }
}
