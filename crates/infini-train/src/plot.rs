//! Line charts as SVG files, drawn with `plotters`. Used by `infini plot` and `infini eval`.
//!
//! SVG rather than PNG: plotters' bitmap backend needs a font from the system (fontconfig and
//! FreeType) or a font file shipped with the binary to draw any text, while SVG text is drawn by
//! whatever displays the file, so charts work on a bare machine and open in any browser.

use std::path::Path;

use plotters::prelude::*;

/// Colours for successive series.
const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];

/// One line (or set of markers) of a chart.
pub struct Series {
    /// Legend text.
    pub name: String,
    /// (x, y) points in order of x; non-finite ones are skipped.
    pub points: Vec<(f64, f64)>,
    /// Draw markers at the points instead of a line.
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

/// The range covering `values`, padded by 5% (a flat series gets ±1 or ±5%).
fn span(values: impl Iterator<Item = f64>, log: bool) -> (f64, f64) {
    let (lo, hi) = values.filter(|v| v.is_finite() && (!log || *v > 0.0)).fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    if !lo.is_finite() {
        return if log { (0.1, 10.0) } else { (0.0, 1.0) };
    }
    if log {
        return (lo / 1.2, hi * 1.2);
    }
    let pad = if hi > lo { (hi - lo) * 0.05 } else { lo.abs().max(1.0) * 0.05 };
    (lo - pad, hi + pad)
}

fn draw<DB: DrawingBackend>(area: &DrawingArea<DB, plotters::coord::Shift>, chart: &Chart) -> Result<(), String> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let points = || chart.series.iter().flat_map(|s| s.points.iter());
    let (x0, x1) = span(points().map(|p| p.0), false);
    let (y0, y1) = span(points().map(|p| p.1), chart.log_y);
    let mut builder = ChartBuilder::on(area);
    builder.caption(&chart.title, ("sans-serif", 16)).margin(10).x_label_area_size(35).y_label_area_size(60);
    let visible = |s: &Series| -> Vec<(f64, f64)> { s.points.iter().copied().filter(|(x, y)| x.is_finite() && y.is_finite() && (!chart.log_y || *y > 0.0)).collect() };
    macro_rules! body {
        ($ctx:expr) => {{
            let mut ctx = $ctx;
            ctx.configure_mesh().x_desc(chart.x_label.as_str()).light_line_style(WHITE.mix(0.0)).draw().map_err(err)?;
            for (i, s) in chart.series.iter().enumerate() {
                let color = PALETTE[i % PALETTE.len()];
                let pts = visible(s);
                let drawn = if s.markers {
                    ctx.draw_series(pts.into_iter().map(|p| Circle::new(p, 3, color.filled()))).map_err(err)?
                } else {
                    ctx.draw_series(LineSeries::new(pts, color.stroke_width(2))).map_err(err)?
                };
                drawn.label(s.name.as_str()).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
            }
            ctx.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(err)?;
        }};
    }
    if chart.log_y {
        body!(builder.build_cartesian_2d(x0..x1, (y0..y1).log_scale()).map_err(err)?);
    } else {
        body!(builder.build_cartesian_2d(x0..x1, y0..y1).map_err(err)?);
    }
    Ok(())
}

/// Draws `charts` in a grid of `columns` panels of 480×300 and saves the SVG (atomically).
pub fn save_grid(charts: &[Chart], columns: usize, path: &Path) -> Result<(), String> {
    let columns = columns.max(1);
    let rows = charts.len().div_ceil(columns).max(1);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (480 * columns as u32, 300 * rows as u32)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        for (area, chart) in root.split_evenly((rows, columns)).iter().zip(charts) {
            draw(area, chart)?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    infini_data::fsutil::atomic_write(path, svg.as_bytes()).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// `RUN/metrics.jsonl` → `RUN/curves.svg`: loss (train and validation), learning rate,
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
    let out = run_dir.join("curves.svg");
    save_grid(&charts, 2, &out)?;
    Ok(out)
}
