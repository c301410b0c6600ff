//! The `null` test stage: deterministic, computes nothing, optionally sleeps and optionally
//! fails on named pages. For tests and for measuring pipebench's own overhead; never a default
//! for real work, and reports mark it (`is_test_stage`).

use std::time::Duration;

use super::{ModelInfo, Stage, StageError, StageKind};
use crate::config::StageSpec;
use crate::page::PageWork;

pub struct NullStage {
    kind: StageKind,
    sleep: Duration,
    fail_pages: Vec<String>,
}

impl NullStage {
    pub fn new(kind: StageKind, spec: &StageSpec) -> Self {
        Self {
            kind,
            sleep: Duration::from_secs_f64(spec.sleep_ms / 1000.0),
            fail_pages: spec.fail_pages.clone(),
        }
    }
}

impl Stage for NullStage {
    fn kind(&self) -> StageKind {
        self.kind
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
                "injected",
                format!("null stage told to fail on {}", p.id),
            ));
        }
        Ok(())
    }
}
