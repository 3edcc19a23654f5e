//! `ergon measure --plot FILE.svg`: the package's and the command's power
//! over time (plotters, SVG backend).

use std::path::{Path, PathBuf};

use plotters::prelude::*;

/// Drawing the plot failed.
#[derive(Debug, thiserror::Error)]
#[error("drawing {path}: {message}")]
pub struct PlotError {
    pub path: PathBuf,
    pub message: String,
}

/// Draws both 1 ms power series, averaged over 10 ms so the lines stay readable.
pub fn svg(path: &Path, package: &[f64], command: &[f64]) -> Result<(), PlotError> {
    let err = |e: &dyn std::fmt::Display| PlotError {
        path: path.to_owned(),
        message: e.to_string(),
    };
    let smooth = |s: &[f64]| -> Vec<(f64, f64)> {
        s.chunks(10)
            .enumerate()
            .map(|(i, c)| {
                (
                    (i * 10) as f64 / 1000.0,
                    c.iter().sum::<f64>() / c.len() as f64,
                )
            })
            .collect()
    };
    let (pkg, cmd) = (smooth(package), smooth(command));
    let t_max = (package.len().max(1) as f64) / 1000.0;
    let w_max = pkg.iter().chain(&cmd).map(|p| p.1).fold(1.0f64, f64::max) * 1.1;
    let root = SVGBackend::new(path, (1000, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption("ergon measure: power", ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..t_max, 0.0..w_max)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("watts")
        .draw()
        .map_err(|e| err(&e))?;
    chart
        .draw_series(LineSeries::new(pkg, &BLUE))
        .map_err(|e| err(&e))?
        .label("package")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    chart
        .draw_series(LineSeries::new(cmd, &RED))
        .map_err(|e| err(&e))?
        .label("command")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))
}
