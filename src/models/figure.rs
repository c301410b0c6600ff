//! The figure stage's `crop` model: cuts each figure region out of the page image and records
//! its size, the work a chart-to-table model (DePlot, later) starts from. It runs no network:
//! its time is the crop's memory traffic, and its output is the region as found.

use crate::models::routing::{Route, route};
use crate::models::{ModelInfo, Stage, StageError, StageKind};
use crate::page::PageWork;

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

    fn model(&self) -> ModelInfo {
        ModelInfo {
            stage: StageKind::Figure,
            id: "crop".into(),
            is_test_stage: false,
            weights_sha256: None,
        }
    }

    fn process(&mut self, batch: &mut [PageWork]) -> Result<(), StageError> {
        for page in batch.iter_mut() {
            let Some(im) = page.image.as_ref() else {
                return Err(StageError::new(
                    "input",
                    format!("{}: no rendered image reached the figure stage", page.id),
                ));
            };
            let (w, h, stride) = (im.width as usize, im.height as usize, im.stride as usize);
            for r in page.output.regions.iter_mut() {
                if route(&r.class) != Route::Figure {
                    continue;
                }
                let Some([x0, y0, x1, y1]) =
                    crate::models::ocr::stage::pixel_rect(r.bbox, 0.0, w, h)
                else {
                    continue;
                };
                let mut crop = Vec::with_capacity((x1 - x0) * (y1 - y0) * 3);
                for y in y0..y1 {
                    crop.extend_from_slice(&im.data[y * stride + x0 * 3..y * stride + x1 * 3]);
                }
                self.cropped_px += (crop.len() / 3) as u64;
                r.text = None;
            }
        }
        Ok(())
    }
}
