//! Line plots of per-step profiles (‖∂L/∂h_t‖, the reach profile) against t = 1..T on a log
//! y axis, as SVG or PNG by the file's extension, with plotters. A run's plot (`report_series`)
//! gives each spectral radius one colour, ‖∂L/∂h_t‖ a solid line and the reach profile a dashed
//! one; where the two are the same numbers (`--loss-at last`) one line stands for both.
//!
//! Text: plotters is built with its pure-Rust `ab_glyph` font backend (no fontconfig or
//! FreeType to build or link), which needs a TrueType font registered at run time, for both
//! formats (the SVG's layout is measured with it too). We load one from `$BPTT_PLOT_FONT` or
//! the usual system locations (DejaVu Sans, Liberation Sans, Arial, …), or the one given to
//! `use_font`; when none is there the plot fails with one line naming the fix. A font given to
//! `use_font` that is no usable font is an error, not a silent fallback.
//!
//! `train` draws the training curve (`write_train_plot`).

pub mod train;

pub use train::write_train_plot;

use std::path::Path;
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::check::CheckReport;
use crate::error::{Error, Result, one_line};

/// One line of the plot: `values[i]` is drawn at t = i + 1.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub label: String,
    pub values: Vec<f64>,
    /// Index of its colour (`series_color`); None: the series' own position in the plot.
    pub color: Option<usize>,
    /// Drawn dashed (at `DASHED_WIDTH`) instead of solid (at `SOLID_WIDTH`).
    pub dashed: bool,
}

impl Series {
    pub fn new(label: impl Into<String>, values: Vec<f64>) -> Self {
        Series { label: label.into(), values, color: None, dashed: false }
    }

    pub fn with_color(mut self, color: usize) -> Self {
        self.color = Some(color);
        self
    }

    pub fn dashed(mut self) -> Self {
        self.dashed = true;
        self
    }
}

/// Stroke widths, in pixels: solid data lines, dashed ones (a little heavier, as dashes read
/// lighter), and the legend's samples.
pub const SOLID_WIDTH: u32 = 2;
pub const DASHED_WIDTH: u32 = 3;
pub const LEGEND_WIDTH: u32 = 4;
/// Dash and gap lengths of dashed lines, in pixels.
const DASH: (u32, u32) = (9, 6);

/// A run's profiles as series: ‖∂L/∂h_t‖ solid and the reach profile ‖∂L_T/∂h_t‖ dashed, both
/// in colour `color`, labelled with `suffix` (e.g. " ρ=0.9"). When the two hold the same
/// numbers (a loss at the last step only makes ‖∂L/∂h_t‖ the reach profile), one solid line
/// stands for both.
pub fn report_series(r: &CheckReport, color: usize, suffix: &str) -> Vec<Series> {
    profile_series(&r.grad_h_norm, &r.reach, color, suffix)
}

/// `report_series` from the two profiles themselves (a sweep's rows have them too).
pub fn profile_series(grad_h_norm: &[f64], reach: &[f64], color: usize, suffix: &str) -> Vec<Series> {
    if grad_h_norm == reach {
        return vec![
            Series::new(
                format!("‖∂L/∂h_t‖ = reach ‖∂L_T/∂h_t‖ (loss at the last step only){suffix}"),
                grad_h_norm.to_vec(),
            )
            .with_color(color),
        ];
    }
    vec![
        Series::new(format!("‖∂L/∂h_t‖{suffix}"), grad_h_norm.to_vec()).with_color(color),
        Series::new(format!("reach ‖∂L_T/∂h_t‖{suffix}"), reach.to_vec()).with_color(color).dashed(),
    ]
}

/// A run's plot title: the shape, φ, the radius (or `radii` of a sweep), and what is computed
/// beyond plain BPTT (truncation, segments, clipping).
pub fn report_title(r: &CheckReport, radii: Option<&[f64]>) -> String {
    let radius = match radii {
        Some(radii) => radii.iter().map(|&x| crate::format::number(x)).collect::<Vec<_>>().join(", "),
        None => crate::format::significant(r.spectral_radius, 4),
    };
    let mut title = format!("{}, {}, spectral radius {radius}", r.shape, r.activation.name());
    // The variant's lines, shortened to their first clause ("truncated 8 steps back from each
    // loss term" → "truncated 8 steps back"; "4 segments, gradient cut …" → "4 segments").
    for v in &r.variant {
        let short = v.split([',', '(']).next().unwrap_or(v).trim().trim_end_matches(" from each loss term");
        title.push_str("; ");
        title.push_str(short);
    }
    title
}

/// Writes the plot of a finished check to `path` (.svg or .png): ‖∂L/∂h_t‖ and the reach
/// profile of the run, or of every radius of a sweep, one colour each.
pub fn write_check_plot(path: &Path, r: &CheckReport) -> Result<()> {
    if r.sweep.is_empty() {
        return plot_profiles(path, &report_title(r, None), &report_series(r, 0, ""));
    }
    let radii: Vec<f64> = r.sweep.iter().map(|row| row.radius).collect();
    let series: Vec<Series> = r
        .sweep
        .iter()
        .enumerate()
        .flat_map(|(k, row)| {
            profile_series(&row.grad_h_norm, &row.reach, k, &format!(" ρ={}", crate::format::number(row.radius)))
        })
        .collect();
    plot_profiles(path, &report_title(r, Some(&radii)), &series)
}

/// Where a font usually is: Debian/Ubuntu, Fedora, Arch, macOS, Windows.
const FONT_CANDIDATES: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
    "/Library/Fonts/Arial.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "C:\\Windows\\Fonts\\arial.ttf",
];

const SIZE: (u32, u32) = (900, 560);

/// Writes the profiles to `path`: `.svg` or `.png` (any other extension is an error). Zero and
/// non-finite values cannot sit on a log axis: they are left out (the line is broken there)
/// and the series' legend entry says how many.
pub fn plot_profiles(path: &Path, title: &str, series: &[Series]) -> Result<()> {
    write_figure(
        path,
        SIZE,
        "plot",
        |root| draw(root, title, series).map_err(|e| e.to_string()),
        |root| draw(root, title, series).map_err(|e| e.to_string()),
    )
}

/// How every figure reaches its file (`--plot`, `--graph`): drawn in memory, as SVG or PNG by
/// `path`'s extension (any other is an error, named before the font is looked for), then
/// written atomically like every file bptt writes (`io::write_atomic`: a temporary file in the
/// same folder, renamed), so a full disk or an interrupt leaves an existing file as it was.
/// The same figure gives the same bytes. `what` names it in errors ("plot", "graph").
pub(crate) fn write_figure<S, P>(path: &Path, size: (u32, u32), what: &str, svg: S, png: P) -> Result<()>
where
    S: FnOnce(&DrawingArea<SVGBackend, Shift>) -> std::result::Result<(), String>,
    P: FnOnce(&DrawingArea<BitMapBackend, Shift>) -> std::result::Result<(), String>,
{
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    let failed =
        |e: String| Error::Io { path: path.display().to_string(), reason: format!("drawing the {what} failed: {e}") };
    let bytes = match ext.as_deref() {
        Some("svg") => {
            register_font(path)?;
            let mut text = String::new();
            {
                let root = SVGBackend::with_string(&mut text, size).into_drawing_area();
                svg(&root).map_err(failed)?;
                root.present().map_err(|e| failed(e.to_string()))?;
            }
            text.into_bytes()
        }
        Some("png") => {
            register_font(path)?;
            let mut rgb = vec![0u8; 3 * size.0 as usize * size.1 as usize];
            {
                let root = BitMapBackend::with_buffer(&mut rgb, size).into_drawing_area();
                png(&root).map_err(failed)?;
                root.present().map_err(|e| failed(e.to_string()))?;
            }
            png_bytes(&rgb, size).map_err(failed)?
        }
        other => {
            return Err(Error::Invalid(format!(
                "cannot draw the {what} to {}: the extension {} is not supported (use .svg or .png)",
                one_line(&path.display().to_string()),
                other.map_or("(none)".to_string(), |e| format!("`.{}`", one_line(e)))
            )));
        }
    };
    crate::io::write_atomic(path, &bytes)
}

/// An RGB picture as PNG bytes.
pub(crate) fn png_bytes(rgb: &[u8], (w, h): (u32, u32)) -> std::result::Result<Vec<u8>, String> {
    use image::ImageEncoder;
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(rgb, w, h, image::ColorType::Rgb8)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

/// The font chosen by `use_font`, if any (set once, before the first plot).
static CHOSEN_FONT: OnceLock<std::path::PathBuf> = OnceLock::new();

/// Draws every plot's text with the font at `path` (a .ttf or .otf file) instead of a system
/// font. Call it before the first plot; the font is read and checked now, so a file that is no
/// usable font is an error here (exit 2), never a silent fallback to a system font.
pub fn use_font(path: &Path) -> Result<()> {
    if CHOSEN_FONT.set(path.to_path_buf()).is_err() && CHOSEN_FONT.get().map(|p| p.as_path()) != Some(path) {
        return Err(Error::Invalid("the plot font is chosen once per process".into()));
    }
    register_font(path)
}

/// Finds and registers the plot's font now, so that a missing or bad font is refused before
/// any computing (the command line calls it when a plot is asked for).
pub fn check_font(plot: &Path) -> Result<()> {
    register_font(plot)
}

/// Registers a font for plotters once per process; the error names the fix.
pub(crate) fn register_font(path: &Path) -> Result<()> {
    // (bad input: the chosen font is no usable font, the message) or (no font anywhere).
    static FONT: OnceLock<std::result::Result<(), (bool, String)>> = OnceLock::new();
    FONT.get_or_init(|| {
        let try_font = |candidate: &Path| -> std::result::Result<(), String> {
            // Regular files of at most 64 MB only: a font at /dev/zero must not read forever.
            let bytes = crate::io::read_regular(candidate, 64 << 20).map_err(|e| e.to_string())?;
            // plotters keeps fonts for the whole process ('static); this runs at most once.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
                .map_err(|_| "not a TrueType or OpenType font".to_string())
        };
        if let Some(chosen) = CHOSEN_FONT.get() {
            return try_font(chosen).map_err(|why| {
                let why = why.strip_prefix("invalid input: ").unwrap_or(&why).to_string();
                let at = crate::error::quote(&chosen.display().to_string());
                (true, format!("{at} is not a usable font ({why}): give a .ttf or .otf file"))
            });
        }
        if FONT_CANDIDATES.iter().any(|c| try_font(Path::new(c)).is_ok()) {
            return Ok(());
        }
        Err((
            false,
            "no font found for the plot's text: give one (a .ttf or .otf file), or install \
             DejaVu (`apt-get install fonts-dejavu-core`)"
                .to_string(),
        ))
    })
    .clone()
    .map_err(|(bad_input, reason)| {
        if bad_input { Error::Invalid(reason) } else { Error::Io { path: path.display().to_string(), reason } }
    })
}

/// The maximal runs of consecutive plottable (finite, > 0) values, as (t, log10 value) points.
fn runs(values: &[f64]) -> Vec<Vec<(f64, f64)>> {
    let mut out: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut current = Vec::new();
    for (i, &v) in values.iter().enumerate() {
        if v.is_finite() && v > 0.0 {
            current.push(((i + 1) as f64, v.log10()));
        } else if !current.is_empty() {
            out.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// The label of the y tick at log10 value v: "1e-6" on whole decades, "3.2e-1" between them.
pub(crate) fn decade_label(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 { format!("1e{}", v.round()) } else { format!("{:.1e}", 10f64.powf(v)) }
}

/// Line colours (matplotlib's "tab10"): distinct, and dark enough on white.
const COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// The colour of series i (cycling after ten).
pub fn series_color(i: usize) -> (u8, u8, u8) {
    let c = COLORS[i % COLORS.len()];
    (c.0, c.1, c.2)
}

const LEGEND_ROW: u32 = 22;

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    series: &[Series],
) -> std::result::Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    root.fill(&WHITE)?;
    // The legend gets its own strip below the chart, so it never hides a line.
    let legend_height = LEGEND_ROW * series.len() as u32 + 12;
    let (chart_area, legend_area) = root.split_vertically(SIZE.1.saturating_sub(legend_height));

    let steps = series.iter().map(|s| s.values.len()).max().unwrap_or(1);
    let plotted: Vec<f64> =
        series.iter().flat_map(|s| s.values.iter().copied()).filter(|v| v.is_finite() && *v > 0.0).collect();
    // The y axis is log10 of the value on a linear axis, labelled 1e-k: plotters' own log axis
    // leaves values below f64::EPSILON unlabelled, and vanishing gradients go far below that.
    let (lo, hi) = match (plotted.iter().copied().reduce(f64::min), plotted.iter().copied().reduce(f64::max)) {
        // A margin of 0.3 decades (×2) above and below the data.
        (Some(lo), Some(hi)) => (lo.log10() - 0.3, hi.log10() + 0.3),
        _ => (-1.0, 1.0),
    };
    let x_range = if steps > 1 { 1.0..steps as f64 } else { 0.5..1.5 };

    let mut chart = ChartBuilder::on(&chart_area)
        // A long title (a variant named in it) gets a smaller font to fit the width.
        .caption(title, ("sans-serif", if title.chars().count() > 72 { 17 } else { 22 }))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x_range, lo..hi)?;
    chart
        .configure_mesh()
        .x_desc("t  (the backward pass runs from t = T down to t = 1, right to left)")
        .y_desc("norm (log scale)")
        .y_label_formatter(&|v| decade_label(*v))
        // Steps are whole numbers: no label on a fractional tick (a short x range has those).
        .x_label_formatter(&|v| {
            if v.fract() == 0.0 { format!("{v:.0}") } else { String::new() }
        })
        .draw()?;

    for (i, s) in series.iter().enumerate() {
        let color = COLORS[s.color.unwrap_or(i) % COLORS.len()];
        // Each run of plottable values is its own line: no segment bridges a left-out value.
        for run in runs(&s.values) {
            if let [point] = run[..] {
                // A lone point makes no line; mark it so it is not lost.
                chart.draw_series(std::iter::once(Circle::new(point, 3, color.filled())))?;
            } else if s.dashed {
                let style = color.stroke_width(DASHED_WIDTH);
                chart.draw_series(DashedLineSeries::new(run, DASH.0, DASH.1, style))?;
            } else {
                chart.draw_series(LineSeries::new(run, color.stroke_width(SOLID_WIDTH)))?;
            }
        }
        let skipped = s.values.iter().filter(|v| !(v.is_finite() && **v > 0.0)).count();
        let label = if skipped == 0 {
            s.label.clone()
        } else {
            format!("{} ({skipped} zero/non-finite values not shown)", s.label)
        };
        let y = (LEGEND_ROW * i as u32 + LEGEND_ROW / 2) as i32;
        if s.dashed {
            // Two dashes with a gap, like the line.
            for dash in [[(86, y), (97, y)], [(105, y), (116, y)]] {
                legend_area.draw(&PathElement::new(dash.to_vec(), color.stroke_width(LEGEND_WIDTH)))?;
            }
        } else {
            legend_area.draw(&PathElement::new(vec![(86, y), (116, y)], color.stroke_width(LEGEND_WIDTH)))?;
        }
        legend_area.draw(&Text::new(label, (124, y - 8), ("sans-serif", 15).into_font().color(&BLACK)))?;
    }
    Ok(())
}
