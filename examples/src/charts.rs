//! The benchmark's charts (SVG, drawn with plotters): latency by path, and throughput against
//! concurrency, for docs/benchmarks.md to show above its tables.

use std::error::Error;
use std::path::Path;
use std::sync::OnceLock;

use plotters::prelude::*;

/// Where a system's DejaVu Sans usually is (plotters lays text out with a font it is given).
const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// Registers the font once; an error (no charts) where it is missing.
fn font() -> Result<(), String> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            let bytes = std::fs::read(FONT).map_err(|err| format!("{FONT}: {err}"))?;
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
                .map_err(|_| format!("{FONT} is not a font"))
        })
        .clone()
}

/// One path's latencies, in microseconds.
pub struct Latency<'a> {
    pub path: &'a str,
    pub p50_us: f64,
    pub p99_us: f64,
}

/// Horizontal bars of each path's p50, a line to its p99, on a logarithmic scale.
pub fn latency(file: &Path, title: &str, rows: &[Latency]) -> Result<(), Box<dyn Error>> {
    font()?;
    let root = SVGBackend::new(file, (760, 60 + 34 * rows.len() as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    let low = rows.iter().map(|r| r.p50_us).fold(f64::INFINITY, f64::min) / 2.0;
    let high = rows.iter().map(|r| r.p99_us).fold(0.0, f64::max) * 2.0;
    let n = rows.len() as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(160)
        .build_cartesian_2d((low..high).log_scale(), 0.0..n)?;
    let label = |y: &f64| {
        let at = (n - y - 0.5).round();
        rows.get(at as usize)
            .filter(|_| (n - y - 0.5 - at).abs() < 0.01)
            .map_or(String::new(), |r| r.path.to_owned())
    };
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(2 * rows.len() + 1)
        .y_label_formatter(&label)
        .x_desc("µs (p50 bar, p99 line; log scale)")
        .draw()?;
    for (i, row) in rows.iter().enumerate() {
        let y = n - i as f64 - 1.0;
        let color = COLORS[i % COLORS.len()];
        chart.draw_series(std::iter::once(Rectangle::new(
            [(low, y + 0.2), (row.p50_us, y + 0.8)],
            color.filled(),
        )))?;
        chart.draw_series(std::iter::once(PathElement::new(
            [(row.p50_us, y + 0.5), (row.p99_us, y + 0.5)],
            color.stroke_width(2),
        )))?;
    }
    root.present()?;
    Ok(())
}

/// One path's throughput at each concurrency.
pub struct Throughput<'a> {
    pub path: &'a str,
    pub points: Vec<(f64, f64)>,
}

/// Calls per second against concurrent tasks, a line per path (both axes logarithmic).
pub fn throughput(file: &Path, title: &str, series: &[Throughput]) -> Result<(), Box<dyn Error>> {
    lines(file, title, ("concurrent tasks", "calls/s"), series)
}

/// A line per path of `(x, y)` points, both axes logarithmic, with their descriptions.
pub fn lines(
    file: &Path,
    title: &str,
    (x_desc, y_desc): (&str, &str),
    series: &[Throughput],
) -> Result<(), Box<dyn Error>> {
    font()?;
    let root = SVGBackend::new(file, (760, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let points = || series.iter().flat_map(|s| s.points.iter());
    let (x_max, y_max) = points().fold((1.0f64, 1.0f64), |(x, y), p| (x.max(p.0), y.max(p.1)));
    let y_min = points().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d((1.0..x_max * 1.2).log_scale(), (y_min / 2.0..y_max * 2.0).log_scale())?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .y_label_formatter(&|v| if *v >= 1000.0 { format!("{:.0}k", v / 1000.0) } else { format!("{v:.0}") })
        .draw()?;
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(s.points.iter().copied(), color.stroke_width(2)))?
            .label(s.path)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color.stroke_width(2)));
        chart.draw_series(s.points.iter().map(|p| Circle::new(*p, 3, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
