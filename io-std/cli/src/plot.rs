//! `fleet bench --sweep ... --plot FILE.svg`: a throughput / latency curve.

use std::path::Path;

use plotters::prelude::*;

use crate::bench::BenchResult;

/// Draws p50 and p99 latency against throughput, one point per client count.
pub fn draw(results: &[BenchResult], title: &str, path: &Path) -> Result<(), String> {
    let max_x = results.iter().map(|r| r.ops_per_s).fold(1.0, f64::max) * 1.1;
    let max_y = results.iter().map(|r| r.p99_us as f64).fold(1.0, f64::max) * 1.1;
    let root = SVGBackend::new(path, (800, 500)).into_drawing_area();
    let e = |e: DrawingAreaErrorKind<std::io::Error>| format!("cannot draw {}: {e}", path.display());
    root.fill(&WHITE).map_err(e)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(20)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..max_x, 0.0..max_y)
        .map_err(e)?;
    chart.configure_mesh().x_desc("completed ops/s").y_desc("latency (us)").draw().map_err(e)?;
    for (label, color, pick) in [("p50", BLUE, 0usize), ("p99", RED, 1)] {
        let pts: Vec<(f64, f64)> =
            results.iter().map(|r| (r.ops_per_s, if pick == 0 { r.p50_us as f64 } else { r.p99_us as f64 })).collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
            .map_err(e)?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        chart.draw_series(pts.iter().map(|p| Circle::new(*p, 4, color.filled()))).map_err(e)?;
        for (r, p) in results.iter().zip(&pts) {
            if pick == 1 {
                let text = format!("{} clients", r.clients);
                chart.draw_series(std::iter::once(Text::new(text, *p, ("sans-serif", 13)))).map_err(e)?;
            }
        }
    }
    chart.configure_series_labels().border_style(BLACK).background_style(WHITE.mix(0.8)).draw().map_err(e)?;
    root.present().map_err(e)?;
    Ok(())
}
