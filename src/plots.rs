//! PNG figures for the report (plotters, bitmap backend). Images are drawn row-major:
//! value (r, c) of an H×W map lands at x = c, y = r, so a digit's heat map looks like the digit.

use anyhow::{Context, Result, anyhow};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

const FONT: &str = "sans-serif";

fn err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("drawing failed: {e}")
}

/// Draw a figure of `size` in memory, then write it as a PNG atomically: a failure names the
/// file and leaves no partial image behind.
fn save_png(
    path: &Path,
    size: (u32, u32),
    draw: impl for<'b> FnOnce(DrawingArea<BitMapBackend<'b>, Shift>) -> Result<()>,
) -> Result<()> {
    let (w, h) = size;
    let mut buf = vec![255u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut buf, size).into_drawing_area();
        draw(root.clone()).with_context(|| format!("drawing {}", path.display()))?;
        root.present()
            .map_err(err)
            .with_context(|| format!("drawing {}", path.display()))?;
    }
    let mut png = Vec::new();
    image::ImageEncoder::write_image(
        image::codecs::png::PngEncoder::new(&mut png),
        &buf,
        w,
        h,
        image::ColorType::Rgb8,
    )
    .with_context(|| format!("encoding {}", path.display()))?;
    crate::artifacts::write_bytes(path, &png)
}

/// Sequential map for values in [0, 1]: black → white (MNIST's own look).
pub fn gray(v: f32) -> RGBColor {
    let g = (v.clamp(0.0, 1.0) * 255.0).round() as u8;
    RGBColor(g, g, g)
}

/// Diverging map for values in [−1, 1]: blue → white → red.
pub fn diverging(v: f32) -> RGBColor {
    let v = v.clamp(-1.0, 1.0);
    let t = v.abs();
    let fade = |c: u8| (255.0 - (255.0 - c as f32) * t).round() as u8;
    if v >= 0.0 {
        RGBColor(fade(178), fade(24), fade(43))
    } else {
        RGBColor(fade(33), fade(102), fade(172))
    }
}

/// Color of each value of a map: gray for [0, 1] data, diverging (scaled by max |v|) otherwise.
pub fn colors(values: &[f32], signed: bool) -> Vec<RGBColor> {
    if signed {
        let m = values.iter().fold(0f32, |a, v| a.max(v.abs())).max(1e-12);
        values.iter().map(|v| diverging(v / m)).collect()
    } else {
        let m = values.iter().fold(0f32, |a, &v| a.max(v)).max(1e-12);
        let scale = if m > 1.0 { m } else { 1.0 };
        values.iter().map(|v| gray(v / scale)).collect()
    }
}

/// Draw an H×W map into `area` at (x0, y0), `scale` pixels per cell.
pub fn draw_map<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    values: &[f32],
    (h, w): (usize, usize),
    (x0, y0): (i32, i32),
    scale: i32,
    signed: bool,
) -> Result<()> {
    for (i, c) in colors(values, signed).into_iter().enumerate() {
        let (r, col) = ((i / w) as i32, (i % w) as i32);
        if r as usize >= h {
            break;
        }
        let (x, y) = (x0 + col * scale, y0 + r * scale);
        area.draw(&Rectangle::new(
            [(x, y), (x + scale, y + scale)],
            c.filled(),
        ))
        .map_err(err)?;
    }
    Ok(())
}

/// One tile of a grid: a map and its caption.
pub struct Tile {
    pub values: Vec<f32>,
    pub caption: String,
    pub signed: bool,
}

/// A grid of H×W maps with captions; `row_titles` label the rows (or empty).
pub fn grid_png(
    path: &Path,
    tiles: &[Tile],
    (h, w): (usize, usize),
    cols: usize,
    scale: i32,
    row_titles: &[String],
) -> Result<()> {
    let cols = cols.max(1);
    let rows = tiles.len().div_ceil(cols).max(1);
    let left = if row_titles.is_empty() { 0 } else { 90 };
    let cell_w = w as i32 * scale + 8;
    let cell_h = h as i32 * scale + 22;
    let size = (
        (left + cell_w * cols as i32 + 8) as u32,
        (cell_h * rows as i32 + 8) as u32,
    );
    save_png(path, size, |root| {
        root.fill(&WHITE).map_err(err)?;
        let font = (FONT, 13).into_font().color(&BLACK);
        for (r, t) in row_titles.iter().enumerate().take(rows) {
            root.draw(&Text::new(
                t.clone(),
                (6, r as i32 * cell_h + cell_h / 2),
                font.clone(),
            ))
            .map_err(err)?;
        }
        for (i, t) in tiles.iter().enumerate() {
            let (r, c) = ((i / cols) as i32, (i % cols) as i32);
            let (x, y) = (left + 4 + c * cell_w, 4 + r * cell_h);
            draw_map(&root, &t.values, (h, w), (x, y), scale, t.signed)?;
            root.draw(&Text::new(
                t.caption.clone(),
                (x, y + h as i32 * scale + 3),
                font.clone(),
            ))
            .map_err(err)?;
        }
        Ok(())
    })
}

/// Feature-space maps as strips: one row of cells per map, one cell per neuron.
pub fn strips_png(path: &Path, tiles: &[Tile], cell: i32) -> Result<()> {
    let width = tiles.iter().map(|t| t.values.len()).max().unwrap_or(1) as i32;
    let size = (
        (160 + width * cell + 10) as u32,
        (tiles.len() as i32 * (cell + 6) + 10) as u32,
    );
    save_png(path, size, |root| {
        root.fill(&WHITE).map_err(err)?;
        let font = (FONT, 13).into_font().color(&BLACK);
        for (i, t) in tiles.iter().enumerate() {
            let y = 5 + i as i32 * (cell + 6);
            root.draw(&Text::new(t.caption.clone(), (5, y + 2), font.clone()))
                .map_err(err)?;
            draw_map(
                &root,
                &t.values,
                (1, t.values.len()),
                (160, y),
                cell,
                t.signed,
            )?;
        }
        Ok(())
    })
}

/// A line series of a chart.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub color: RGBColor,
    pub dashed: bool,
}

/// Distinct colours for up to 20 series (matplotlib's tab10, then darker and lighter tones).
pub fn palette(i: usize) -> RGBColor {
    const P: [RGBColor; 20] = [
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
        RGBColor(0, 0, 128),
        RGBColor(128, 0, 0),
        RGBColor(0, 100, 0),
        RGBColor(255, 215, 0),
        RGBColor(75, 0, 130),
        RGBColor(0, 128, 128),
        RGBColor(205, 92, 92),
        RGBColor(85, 107, 47),
        RGBColor(255, 105, 180),
        RGBColor(70, 130, 180),
    ];
    P[i % P.len()]
}

/// The x range of every point (widened by 1 each side when it is one value), the y range of
/// the finite ones, and the y padding.
fn line_ranges(series: &[Series]) -> ((f64, f64), (f64, f64), f64) {
    let xs = series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let ys: Vec<f64> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .filter(|v| v.is_finite())
        .collect();
    let (x0, x1) = xs.fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(x), b.max(x)));
    let (y0, y1) = ys
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), &y| (a.min(y), b.max(y)));
    let pad = ((y1 - y0) * 0.08).max(1e-3);
    let (x0, x1) = if x0 < x1 {
        (x0, x1)
    } else {
        (x0 - 1.0, x0 + 1.0)
    };
    ((x0, x1), (y0, y1), pad)
}

/// An x tick's label: the name at a whole x, nothing between names, the number when there are
/// no names.
fn x_label(names: Vec<String>) -> impl Fn(&f64) -> String {
    move |x: &f64| {
        let i = x.round();
        if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < names.len() {
            names[i as usize].clone()
        } else if names.is_empty() {
            format!("{x}")
        } else {
            String::new()
        }
    }
}

/// What a line chart shows: its title, the axes' descriptions, the series, the x ticks' names
/// (when given) and marked points (x, y, label).
pub struct LineChart<'a> {
    pub title: &'a str,
    pub x_desc: &'a str,
    pub y_desc: &'a str,
    pub series: &'a [Series],
    pub x_names: &'a [String],
    pub marks: &'a [(f64, f64, String)],
}

/// A line chart; x ticks are labelled with `x_names` when given.
pub fn line_png(path: &Path, chart: &LineChart, size: (u32, u32)) -> Result<()> {
    let LineChart {
        title,
        x_desc,
        y_desc,
        series,
        x_names,
        marks,
    } = *chart;
    save_png(path, size, |root| {
        root.fill(&WHITE).map_err(err)?;
        let (root, side) = root.split_horizontally(size.0.saturating_sub(LEGEND_W));
        let entries: Vec<(String, RGBColor, bool)> = series
            .iter()
            .map(|s| (s.name.clone(), s.color, s.dashed))
            .collect();
        legend_beside(&side, &entries)?;
        let ((x0, x1), (y0, y1), pad) = line_ranges(series);
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(60)
            .build_cartesian_2d(x0 - 0.3..x1 + 0.3, (y0 - pad)..(y1 + pad))
            .map_err(err)?;
        let formatter = x_label(x_names.to_vec());
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .x_labels(if x_names.is_empty() {
                10
            } else {
                x_names.len() + 2
            })
            .x_label_formatter(&formatter)
            .label_style((FONT, 13))
            .draw()
            .map_err(err)?;
        for s in series {
            let style = s.color.stroke_width(if s.dashed { 1 } else { 2 });
            let pts = s.points.clone();
            let color = s.color;
            chart
                .draw_series(LineSeries::new(pts.clone(), style))
                .map_err(err)?
                .label(s.name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
            chart
                .draw_series(pts.into_iter().map(|p| Circle::new(p, 3, s.color.filled())))
                .map_err(err)?;
        }
        for (x, y, label) in marks {
            chart
                .draw_series(std::iter::once(Circle::new(
                    (*x, *y),
                    8,
                    RED.stroke_width(2),
                )))
                .map_err(err)?;
            chart
                .draw_series(std::iter::once(Text::new(
                    label.clone(),
                    (*x, *y),
                    (FONT, 14).into_font().color(&RED),
                )))
                .map_err(err)?;
        }
        Ok(())
    })
}

/// Width of the strip beside a chart that holds its legend (outside the data).
const LEGEND_W: u32 = 210;

/// A legend in its own strip: a swatch (a line, thin when dashed) and the name per entry.
fn legend_beside(
    area: &DrawingArea<BitMapBackend<'_>, Shift>,
    entries: &[(String, RGBColor, bool)],
) -> Result<()> {
    let font = (FONT, 12).into_font().color(&BLACK);
    for (i, (name, color, thin)) in entries.iter().enumerate() {
        let y = 40 + 17 * i as i32;
        area.draw(&PathElement::new(
            vec![(6, y), (28, y)],
            color.stroke_width(if *thin { 1 } else { 3 }),
        ))
        .map_err(err)?;
        area.draw(&Text::new(name.clone(), (34, y - 6), font.clone()))
            .map_err(err)?;
    }
    Ok(())
}

/// Grouped bars: for each category, one bar per group.
pub fn bars_png(
    path: &Path,
    title: &str,
    categories: &[String],
    groups: &[(String, Vec<f64>)],
    size: (u32, u32),
) -> Result<()> {
    save_png(path, size, |root| {
        root.fill(&WHITE).map_err(err)?;
        let (root, side) = root.split_horizontally(size.0.saturating_sub(LEGEND_W));
        let entries: Vec<(String, RGBColor, bool)> = groups
            .iter()
            .enumerate()
            .map(|(i, (n, _))| (n.clone(), palette(i), false))
            .collect();
        legend_beside(&side, &entries)?;
        let lo = groups
            .iter()
            .flat_map(|g| g.1.iter().copied())
            .fold(1.0f64, f64::min);
        let y0 = (lo - 0.05).clamp(0.0, 1.0);
        let n = categories.len();
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(60)
            .build_cartesian_2d(-0.5f64..n as f64 - 0.5, y0..1.0f64)
            .map_err(err)?;
        let names = categories.to_vec();
        let fmt = move |x: &f64| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < names.len() {
                names[i as usize].clone()
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .x_labels(n * 2 + 1)
            .x_label_formatter(&fmt)
            .y_desc("test accuracy")
            .label_style((FONT, 13))
            .draw()
            .map_err(err)?;
        let k = groups.len().max(1) as f64;
        let bw = 0.8 / k;
        for (gi, (name, vals)) in groups.iter().enumerate() {
            let color = palette(gi);
            chart
                .draw_series(vals.iter().enumerate().map(|(i, &v)| {
                    let x = i as f64 - 0.4 + gi as f64 * bw;
                    Rectangle::new([(x, y0), (x + bw * 0.95, v)], color.filled())
                }))
                .map_err(err)?;
            let _ = name;
        }
        Ok(())
    })
}

/// A forest plot: one row per arm, the mean difference and its interval, a line at 0.
pub fn forest_png(path: &Path, title: &str, rows: &[(String, f64, f64, f64)]) -> Result<()> {
    forest_png_with(
        path,
        title,
        "final accuracy − control (mean over seeds, 95% CI)",
        rows,
    )
}

/// [`forest_png`] with its own axis description (rows with an empty interval are dots).
pub fn forest_png_with(
    path: &Path,
    title: &str,
    x_desc: &str,
    rows: &[(String, f64, f64, f64)],
) -> Result<()> {
    let h = 60 + 24 * rows.len() as u32;
    save_png(path, (900, h.max(160)), |root| {
        root.fill(&WHITE).map_err(err)?;
        let lo = rows.iter().map(|r| r.2).fold(0.0f64, f64::min);
        let hi = rows.iter().map(|r| r.3).fold(0.0f64, f64::max);
        let pad = ((hi - lo) * 0.08).max(1e-3);
        let n = rows.len();
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(190)
            .build_cartesian_2d((lo - pad)..(hi + pad), -0.5f64..n as f64 - 0.5)
            .map_err(err)?;
        let names: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
        let fmt = move |y: &f64| {
            let i = y.round();
            if (y - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < names.len() {
                names[n - 1 - i as usize].clone()
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .y_labels(n * 2 + 1)
            .y_label_formatter(&fmt)
            .x_desc(x_desc)
            .label_style((FONT, 13))
            .draw()
            .map_err(err)?;
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(0.0, -0.5), (0.0, n as f64 - 0.5)],
                BLACK.stroke_width(1),
            )))
            .map_err(err)?;
        for (i, (_, m, a, b)) in rows.iter().enumerate() {
            let y = (n - 1 - i) as f64;
            let color = if *a > 0.0 {
                RGBColor(44, 160, 44)
            } else if *b < 0.0 {
                RGBColor(214, 39, 40)
            } else {
                RGBColor(90, 90, 90)
            };
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(*a, y), (*b, y)],
                    color.stroke_width(2),
                )))
                .map_err(err)?;
            chart
                .draw_series(std::iter::once(Circle::new((*m, y), 4, color.filled())))
                .map_err(err)?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_are_right_way_up() {
        // A 3×4 map with one bright value at row 0, column 3 (top right).
        let mut v = vec![0.0f32; 12];
        v[3] = 1.0;
        let (w, h) = (4 * 2, 3 * 2);
        let mut buf = vec![0u8; w * h * 3];
        {
            let root =
                BitMapBackend::with_buffer(&mut buf, (w as u32, h as u32)).into_drawing_area();
            draw_map(&root, &v, (3, 4), (0, 0), 2, false).unwrap();
            root.present().unwrap();
        }
        let px = |x: usize, y: usize| buf[(y * w + x) * 3];
        assert_eq!(px(7, 0), 255, "top-right cell is bright");
        assert_eq!(px(0, 0), 0);
        assert_eq!(px(7, 5), 0, "bottom-right cell is dark");
    }

    #[test]
    fn diverging_is_symmetric() {
        assert_eq!(diverging(0.0), RGBColor(255, 255, 255));
        let (r, b) = (diverging(1.0), diverging(-1.0));
        assert!(r.0 > r.2 && b.2 > b.0);
    }
}
