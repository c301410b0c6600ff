//! The figure stage's `crop` model: cuts each figure region out of the page image and records
//! its size, the work a chart-to-table model starts from (`deplot`, in `models::pix2struct`,
//! goes on to read the chart's table). It runs no network: its time is the crop's memory
//! traffic, and its output is the region as found.

use crate::models::routing::{Route, pixel_rect, route};
use crate::models::{ModelInfo, Stage, StageError};
use crate::page::PageWork;
use crate::vocab::StageKind;

/// The registry's builder of `crop` (no options, no weights).
pub fn build(_req: &crate::models::registry::BuildRequest) -> Result<Box<dyn Stage>, StageError> {
    Ok(Box::new(FigureCropStage::default()))
}

#[derive(Debug, Default)]
pub struct FigureCropStage {
    /// Pixels cut out over the stage's life (keeps the copies observable, so they are not
    /// optimized away).
    pub cropped_px: u64,
}

impl Stage for FigureCropStage {
    fn kind(&self) -> StageKind {
        StageKind::Figure
    }

    fn replicate(&self) -> Option<Box<dyn Stage>> {
        Some(Box::new(Self::default()))
    }

    fn model(&self) -> ModelInfo {
        ModelInfo {
            stage: StageKind::Figure,
            id: "crop".into(),
            is_test_stage: false,
            untrained: false,
            fallback: None,
            weights_sha256: None,
        }
    }

    fn process(&mut self, batch: &mut [PageWork]) -> Result<(), StageError> {
        for page in batch.iter() {
            let img = crate::models::page_bgr(page, StageKind::Figure)?;
            for r in &page.output.regions {
                if route(&r.class) != Route::Figure {
                    continue;
                }
                let Some(b) = pixel_rect(r.bbox, 0.0, img.width, img.height) else {
                    continue;
                };
                let view = img.crop(b);
                let mut crop = Vec::with_capacity(view.width * view.height * 3);
                for y in 0..view.height {
                    crop.extend_from_slice(
                        &view.data[y * view.stride..y * view.stride + view.width * 3],
                    );
                }
                self.cropped_px += (crop.len() / 3) as u64;
            }
        }
        Ok(())
    }
}
