//! Boxes in fractions of the image, overlap measures and the region grids.
use serde::{Deserialize, Serialize};

/// A rectangle in fractions of the image (0..=1).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = RecognizedBox)]
pub struct BoxF {
    pub x: f32,
    pub y: f32,
    pub width: f32,
    pub height: f32,
}

impl BoxF {
    pub const WHOLE: BoxF = BoxF {
        x: 0.0,
        y: 0.0,
        width: 1.0,
        height: 1.0,
    };

    pub fn area(&self) -> f32 {
        self.width.max(0.0) * self.height.max(0.0)
    }

    fn intersection(&self, o: &BoxF) -> f32 {
        let ix = ((self.x + self.width).min(o.x + o.width) - self.x.max(o.x)).max(0.0);
        let iy = ((self.y + self.height).min(o.y + o.height) - self.y.max(o.y)).max(0.0);
        ix * iy
    }

    /// Intersection over union.
    pub fn iou(&self, o: &BoxF) -> f32 {
        let i = self.intersection(o);
        let u = self.area() + o.area() - i;
        if u <= 0.0 {
            0.0
        } else {
            i / u
        }
    }

    /// The share of `self` that lies inside `o`.
    pub fn inside(&self, o: &BoxF) -> f32 {
        let a = self.area();
        if a <= 0.0 {
            0.0
        } else {
            self.intersection(o) / a
        }
    }

    /// Grown by `f` of its size on every side, clamped to the image.
    pub fn expand(&self, f: f32) -> BoxF {
        let x0 = (self.x - self.width * f).max(0.0);
        let y0 = (self.y - self.height * f).max(0.0);
        let x1 = (self.x + self.width * (1.0 + f)).min(1.0);
        let y1 = (self.y + self.height * (1.0 + f)).min(1.0);
        BoxF {
            x: x0,
            y: y0,
            width: x1 - x0,
            height: y1 - y0,
        }
    }
}

/// Most window positions along one axis for one scale.
pub const MAX_POSITIONS: usize = 7;

/// Square windows (in pixels) whose side is `s` × the image's short side, for each scale,
/// stepped by `side × step` and spread evenly so the last one touches the far edge; in
/// fractions of a `w`×`h` image.
pub fn grid(w: u32, h: u32, scales: &[f32], step: f32) -> Vec<BoxF> {
    let (wf, hf) = (w.max(1) as f32, h.max(1) as f32);
    let short = wf.min(hf);
    let mut out = Vec::new();
    for &s in scales {
        let bw = (s * short / wf).min(1.0);
        let bh = (s * short / hf).min(1.0);
        let positions = |extent: f32| -> Vec<f32> {
            if extent >= 1.0 - 1e-6 {
                return vec![0.0];
            }
            // at most MAX_POSITIONS per axis: very elongated photos would explode otherwise
            let n = (((1.0 - extent) / (extent * step)).ceil() as usize + 1).min(MAX_POSITIONS);
            (0..n)
                .map(|i| i as f32 * (1.0 - extent) / (n - 1) as f32)
                .collect()
        };
        for y in positions(bh) {
            for x in positions(bw) {
                out.push(BoxF {
                    x,
                    y,
                    width: bw,
                    height: bh,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iou_and_inside() {
        let a = BoxF {
            x: 0.0,
            y: 0.0,
            width: 0.5,
            height: 0.5,
        };
        let b = BoxF {
            x: 0.25,
            y: 0.0,
            width: 0.5,
            height: 0.5,
        };
        assert!((a.iou(&b) - 1.0 / 3.0).abs() < 1e-5);
        assert!((a.inside(&BoxF::WHOLE) - 1.0).abs() < 1e-6);
        assert!((BoxF::WHOLE.inside(&a) - 0.25).abs() < 1e-6);
    }

    #[test]
    fn grid_covers_the_image() {
        let g = grid(1024, 768, &[0.5], 0.5);
        assert!(g.iter().all(|b| b.x >= 0.0 && b.x + b.width <= 1.0 + 1e-5));
        assert!(g.iter().any(|b| (b.x + b.width - 1.0).abs() < 1e-5));
        assert!(g.iter().any(|b| (b.y + b.height - 1.0).abs() < 1e-5));
        // square in pixels
        let b = g[0];
        assert!((b.width * 1024.0 - b.height * 768.0).abs() < 1.0);
    }
}
