//! The SVG plot of an experiment (feature `plots`: the only user of plotters).

use std::path::Path;

use plotters::prelude::*;

use super::experiment::ExperimentRow;
use crate::error::{Error, Result};

/// Test-error increase against theoretical speedup, one line per method, before
/// (dashed) and after (solid) fine-tuning, as an SVG file.
pub fn plot_experiment(rows: &[ExperimentRow], title: &str, path: &Path) -> Result<()> {
    let err = |e: String| Error::InvalidArgument(format!("{}: plotting failed: {e}", path.display()));
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let top = rows
        .iter()
        .map(|r| 100.0 * (r.error_before - r.dense_error).max(r.error_after - r.dense_error))
        .fold(1.0f64, f64::max)
        .min(60.0);
    let max_x = rows.iter().map(|r| r.theoretical).fold(2.0f64, f64::max) + 0.3;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("{title} (solid: after fine-tuning, dashed: before)"), ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(1.0..max_x, -1.0..top * 1.05)
        .map_err(|e| err(e.to_string()))?;
    chart
        .configure_mesh()
        .x_desc("theoretical speedup")
        .y_desc("test top-1 error increase (points)")
        .draw()
        .map_err(|e| err(e.to_string()))?;
    let mut methods: Vec<&str> = rows.iter().map(|r| r.method.as_str()).collect();
    methods.dedup();
    for (i, m) in methods.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let pts: Vec<&ExperimentRow> = rows.iter().filter(|r| r.method == *m).collect();
        let after: Vec<(f64, f64)> =
            pts.iter().map(|r| (r.theoretical, 100.0 * (r.error_after - r.dense_error))).collect();
        let before: Vec<(f64, f64)> =
            pts.iter().map(|r| (r.theoretical, 100.0 * (r.error_before - r.dense_error))).collect();
        chart
            .draw_series(LineSeries::new(after.clone(), color.stroke_width(2)))
            .map_err(|e| err(e.to_string()))?
            .label(format!("{m} (after FT)"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
        chart
            .draw_series(after.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(|e| err(e.to_string()))?;
        chart
            .draw_series(DashedLineSeries::new(before, 4, 4, color.stroke_width(1)))
            .map_err(|e| err(e.to_string()))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(|e| err(e.to_string()))?;
    root.present().map_err(|e| err(e.to_string()))?;
    Ok(())
}
