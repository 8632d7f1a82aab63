//! The PNG of throughput and p99 against the number of client processes (plotters, bitmap
//! backend). Text needs a TrueType font: `LARDER_BENCH_FONT`, else a DejaVu or Liberation
//! font from the usual system paths (Debian: fonts-dejavu-core).

use std::io;
use std::path::Path;

use plotters::prelude::*;
use plotters::style::FontStyle;

const FONT_CANDIDATES: [&str; 5] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation/LiberationSans-Regular.ttf",
];

fn register_font() -> io::Result<()> {
    use std::sync::OnceLock;
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        let env = std::env::var("LARDER_BENCH_FONT").ok();
        let path = env
            .iter()
            .map(String::as_str)
            .chain(FONT_CANDIDATES)
            .find(|p| Path::new(p).is_file())
            .ok_or_else(|| {
                "no TrueType font found: set LARDER_BENCH_FONT or apt-get install fonts-dejavu-core"
                    .to_string()
            })?;
        let bytes: &'static [u8] = Box::leak(
            std::fs::read(path)
                .map_err(|e| e.to_string())?
                .into_boxed_slice(),
        );
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
            .map_err(|_| format!("{path} is not a usable font"))
    })
    .clone()
    .map_err(io::Error::other)
}

fn color(system: &str) -> RGBColor {
    match system {
        "larder" => RGBColor(0xd6, 0x27, 0x28),
        "memcached/unix" => RGBColor(0x1f, 0x77, 0xb4),
        "memcached/tcp" => RGBColor(0x9e, 0xc1, 0xe0),
        "redis/unix" => RGBColor(0x2c, 0xa0, 0x2c),
        "redis/tcp" => RGBColor(0xa6, 0xd9, 0x8f),
        _ => RGBColor(0x55, 0x55, 0x55),
    }
}

fn plot_err<E: std::fmt::Debug>(e: E) -> io::Error {
    io::Error::other(format!("plotting: {e:?}"))
}

fn log_bounds(vals: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::MAX, f64::MIN);
    for v in vals {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    // A margin, so points on a decade boundary do not sit on the frame.
    let lo = 10f64.powf((lo * 0.7).log10().floor());
    let hi = 10f64.powf((hi * 1.4).log10().ceil());
    (lo, if hi <= lo { lo * 10.0 } else { hi })
}

/// One system's points: (processes, ops/s, p99 µs).
pub type Series<'a> = (&'a str, Vec<(u32, f64, f64)>);

/// Two panels side by side: aggregate ops/s (log) and p99 latency in µs (log) against the
/// number of processes. `series` is (system, [(procs, ops/s, p99 µs)]).
pub fn scaling(path: &Path, title: &str, series: &[Series<'_>]) -> io::Result<()> {
    register_font()?;
    let root = BitMapBackend::new(path, (1200, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let root = root.titled(title, ("sans-serif", 22)).map_err(plot_err)?;
    let (left, right) = root.split_horizontally(600);
    let max_p = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|x| x.0))
        .max()
        .unwrap_or(1);
    let x_range = 0.8f64..f64::from(max_p) + 0.2;

    for (area, which) in [(&left, 0), (&right, 1)] {
        let vals = series
            .iter()
            .flat_map(|(_, p)| p.iter().map(move |x| if which == 0 { x.1 } else { x.2 }));
        let (lo, hi) = log_bounds(vals);
        let caption = if which == 0 {
            "throughput, all processes (ops/s)"
        } else {
            "p99 latency per request (µs)"
        };
        let mut chart = ChartBuilder::on(area)
            .caption(caption, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(x_range.clone(), (lo..hi).log_scale())
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc("client processes")
            .x_labels(max_p as usize + 1)
            .x_label_formatter(&|x| {
                if (x - x.round()).abs() < 1e-9 && *x >= 1.0 {
                    format!("{x:.0}")
                } else {
                    String::new()
                }
            })
            .y_label_formatter(&|y| {
                if *y >= 1e6 {
                    format!("{:.0}M", y / 1e6)
                } else if *y >= 1e3 {
                    format!("{:.0}k", y / 1e3)
                } else if *y >= 1.0 {
                    format!("{y:.0}")
                } else {
                    format!("{y:.2}")
                }
            })
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(plot_err)?;
        for (name, pts) in series {
            let c = color(name);
            let data: Vec<(f64, f64)> = pts
                .iter()
                .map(|x| (f64::from(x.0), if which == 0 { x.1 } else { x.2 }))
                .collect();
            chart
                .draw_series(LineSeries::new(data.clone(), c.stroke_width(3)))
                .map_err(plot_err)?
                .label(*name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(3))
                });
            chart
                .draw_series(data.iter().map(|&p| Circle::new(p, 4, c.filled())))
                .map_err(plot_err)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::MiddleRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .label_font(("sans-serif", 14))
            .draw()
            .map_err(plot_err)?;
    }
    root.present().map_err(plot_err)?;
    Ok(())
}
