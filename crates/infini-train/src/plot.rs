//! Line charts as PNG files, with no font or system dependency: a small rasteriser, the public
//! domain 8×8 bitmap font, and the `png` encoder. Used by `infini plot` and `infini eval`.

use std::path::Path;

use font8x8::legacy::BASIC_LEGACY;

/// An RGB colour.
pub type Rgb = [u8; 3];

/// Colours for successive series.
pub const PALETTE: [Rgb; 8] =
    [[31, 119, 180], [214, 39, 40], [44, 160, 44], [255, 127, 14], [148, 103, 189], [140, 86, 75], [227, 119, 194], [23, 190, 207]];

/// One line (or set of markers) of a chart.
pub struct Series {
    /// Legend text.
    pub name: String,
    /// (x, y) points in order of x.
    pub points: Vec<(f64, f64)>,
    /// Draw squares at the points instead of a line.
    pub markers: bool,
}

/// A chart: title, axis labels and series.
pub struct Chart {
    /// Title above the plot.
    pub title: String,
    /// Label under the x axis.
    pub x_label: String,
    /// Logarithmic y axis.
    pub log_y: bool,
    /// The data.
    pub series: Vec<Series>,
}

/// An RGB image being drawn.
pub struct Canvas {
    width: usize,
    height: usize,
    pixels: Vec<u8>,
}

impl Canvas {
    /// A white canvas.
    pub fn new(width: usize, height: usize) -> Self {
        Self { width, height, pixels: vec![255; width * height * 3] }
    }

    fn set(&mut self, x: i64, y: i64, c: Rgb) {
        if x >= 0 && y >= 0 && (x as usize) < self.width && (y as usize) < self.height {
            let i = (y as usize * self.width + x as usize) * 3;
            self.pixels[i..i + 3].copy_from_slice(&c);
        }
    }

    fn rect(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, c: Rgb) {
        for y in y0..=y1 {
            for x in x0..=x1 {
                self.set(x, y, c);
            }
        }
    }

    /// A line two pixels wide (Bresenham).
    fn line(&mut self, (mut x0, mut y0): (i64, i64), (x1, y1): (i64, i64), c: Rgb) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let mut err = dx + dy;
        loop {
            self.rect(x0, y0, x0 + 1, y0 + 1, c);
            if x0 == x1 && y0 == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x0 += sx;
            }
            if e2 <= dx {
                err += dx;
                y0 += sy;
            }
        }
    }

    /// Text with its top-left corner at (x, y); `scale` 1 is 8 pixels high.
    fn text(&mut self, x: i64, y: i64, s: &str, c: Rgb) {
        for (i, ch) in s.chars().enumerate() {
            let glyph = BASIC_LEGACY[(ch as usize).min(127)];
            for (row, bits) in glyph.iter().enumerate() {
                for col in 0..8 {
                    if bits >> col & 1 == 1 {
                        self.set(x + i as i64 * 8 + col, y + row as i64, c);
                    }
                }
            }
        }
    }

    /// Draws `chart` into the rectangle (x, y, w, h).
    pub fn chart(&mut self, chart: &Chart, x: i64, y: i64, w: i64, h: i64) {
        let grey = [120, 120, 120];
        self.text(x + 60, y + 4, &chart.title, [0, 0, 0]);
        let (left, top, right, bottom) = (x + 70, y + 20, x + w - 10, y + h - 40);
        let ty = |v: f64| if chart.log_y { v.max(1e-12).log10() } else { v };
        let finite: Vec<(f64, f64)> =
            chart.series.iter().flat_map(|s| s.points.iter().copied()).filter(|p| p.0.is_finite() && ty(p.1).is_finite()).collect();
        self.line((left, bottom), (right, bottom), grey);
        self.line((left, top), (left, bottom), grey);
        if finite.is_empty() {
            self.text(left + 10, (top + bottom) / 2, "no data", grey);
            return;
        }
        let (mut x0, mut x1) = finite.iter().fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
        let (mut y0, mut y1) = finite.iter().fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(ty(p.1)), b.max(ty(p.1))));
        if x1 <= x0 {
            (x0, x1) = (x0 - 1.0, x1 + 1.0);
        }
        if y1 <= y0 {
            (y0, y1) = (y0 - 0.5, y1 + 0.5);
        }
        let pad = (y1 - y0) * 0.05;
        (y0, y1) = (y0 - pad, y1 + pad);
        let px = |v: f64| left + ((v - x0) / (x1 - x0) * (right - left) as f64).round() as i64;
        let py = |v: f64| bottom - ((ty(v) - y0) / (y1 - y0) * (bottom - top) as f64).round() as i64;
        for i in 0..=4 {
            let frac = i as f64 / 4.0;
            let (yv, xv) = (y0 + frac * (y1 - y0), x0 + frac * (x1 - x0));
            let yl = if chart.log_y { 10f64.powf(yv) } else { yv };
            let yp = bottom - (frac * (bottom - top) as f64) as i64;
            let xp = left + (frac * (right - left) as f64) as i64;
            self.line((left - 4, yp), (left, yp), grey);
            self.text(x + 2, yp - 4, &format_number(yl), grey);
            self.line((xp, bottom), (xp, bottom + 4), grey);
            let label = format_number(xv);
            self.text(xp - 4 * label.len() as i64, bottom + 8, &label, grey);
        }
        self.text((left + right) / 2 - 4 * chart.x_label.len() as i64, bottom + 22, &chart.x_label, [0, 0, 0]);
        for (i, series) in chart.series.iter().enumerate() {
            let c = PALETTE[i % PALETTE.len()];
            let pts: Vec<(i64, i64)> =
                series.points.iter().filter(|p| p.0.is_finite() && ty(p.1).is_finite()).map(|p| (px(p.0), py(p.1))).collect();
            if series.markers || pts.len() == 1 {
                for &(a, b) in &pts {
                    self.rect(a - 2, b - 2, a + 2, b + 2, c);
                }
            } else {
                for pair in pts.windows(2) {
                    self.line(pair[0], pair[1], c);
                }
            }
            let ly = top + 4 + 12 * i as i64;
            self.rect(right - 150, ly + 2, right - 140, ly + 5, c);
            self.text(right - 134, ly, &series.name.chars().take(16).collect::<String>(), [0, 0, 0]);
        }
    }

    /// Writes the canvas as a PNG.
    pub fn save(&self, path: &Path) -> Result<(), String> {
        let mut bytes = Vec::new();
        {
            let mut encoder = png::Encoder::new(&mut bytes, self.width as u32, self.height as u32);
            encoder.set_color(png::ColorType::Rgb);
            encoder.set_depth(png::BitDepth::Eight);
            let mut writer = encoder.write_header().map_err(|e| e.to_string())?;
            writer.write_image_data(&self.pixels).map_err(|e| e.to_string())?;
        }
        infini_data::fsutil::atomic_write(path, &bytes).map_err(|e| e.to_string())
    }
}

/// Short axis labels: `0.012`, `3.5`, `1200`, `2.5e6`.
pub fn format_number(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if !(1e-2..1e5).contains(&a) {
        format!("{v:.1e}")
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// Draws `charts` in a grid of `columns` panels of 480×300 and saves the PNG.
pub fn save_grid(charts: &[Chart], columns: usize, path: &Path) -> Result<(), String> {
    let (pw, ph) = (480usize, 300usize);
    let rows = charts.len().div_ceil(columns.max(1));
    let mut canvas = Canvas::new(pw * columns, ph * rows.max(1));
    for (i, chart) in charts.iter().enumerate() {
        let (cx, cy) = ((i % columns) * pw, (i / columns) * ph);
        canvas.chart(chart, cx as i64, cy as i64, pw as i64, ph as i64);
    }
    canvas.save(path)
}

/// `RUN/metrics.jsonl` → `RUN/curves.png`: loss (train and validation), learning rate,
/// gradient norm and mean sigmoid(β) per layer against the step.
pub fn plot_run(run_dir: &Path) -> Result<std::path::PathBuf, String> {
    let path = run_dir.join("metrics.jsonl");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let (mut train, mut val, mut lr, mut norm, mut tps) = (vec![], vec![], vec![], vec![], vec![]);
    let mut gates: Vec<Vec<(f64, f64)>> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("{}:{}: not a JSON line: {e}", path.display(), i + 1))?;
        let step = v["step"].as_f64().unwrap_or(f64::NAN);
        let get = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
        if v["kind"] == "validation" {
            val.push((step, get("loss")));
            continue;
        }
        train.push((step, get("loss")));
        lr.push((step, get("lr")));
        norm.push((step, get("grad_norm")));
        tps.push((step, get("tokens_per_s")));
        for (layer, g) in v["gate_mean"].as_array().into_iter().flatten().enumerate() {
            if gates.len() <= layer {
                gates.push(Vec::new());
            }
            gates[layer].push((step, g.as_f64().unwrap_or(f64::NAN)));
        }
    }
    if train.is_empty() {
        return Err(format!("{} has no training steps yet", path.display()));
    }
    let series = |name: &str, points, markers| Series { name: name.into(), points, markers };
    let step = || "step".to_string();
    let charts = vec![
        Chart { title: "loss (nats/token)".into(), x_label: step(), log_y: false, series: vec![series("train", train, false), series("validation", val, true)] },
        Chart { title: "learning rate".into(), x_label: step(), log_y: false, series: vec![series("lr", lr, false)] },
        Chart { title: "gradient norm (before clipping)".into(), x_label: step(), log_y: true, series: vec![series("grad norm", norm, false)] },
        Chart {
            title: "mean sigmoid(beta) per layer".into(),
            x_label: step(),
            log_y: false,
            series: gates.into_iter().enumerate().map(|(i, g)| series(&format!("layer {i}"), g, false)).collect(),
        },
        Chart { title: "training tokens/s".into(), x_label: step(), log_y: false, series: vec![series("tokens/s", tps, false)] },
    ];
    let out = run_dir.join("curves.png");
    save_grid(&charts, 2, &out)?;
    Ok(out)
}
