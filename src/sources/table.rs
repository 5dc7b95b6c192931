//! A Parquet table of samples: one row per sample, a label column (`data.label_column`:
//! integers, or text whose sorted values are the class names) and a pixel column
//! (`data.pixels_column`: a list or array of numbers, C × H × W). Integer pixels are scaled by
//! 1/255 and floats taken as they are, unless `data.scale` says otherwise. The shape is
//! `data.channels` × `data.height` × `data.width`, or square grayscale images.

use super::{Pixels, Rows, class_count, two_labels};
use crate::artifacts::DatasetMeta;
use crate::artifacts::table::read_frame;
use crate::config::Pipeline;
use anyhow::{Context, Result, anyhow, bail};
use polars::prelude::{DataFrame, DataType};
use std::collections::BTreeSet;
use std::path::Path;

/// The labels and the class names (empty for integer labels without data.class_names).
fn labels(df: &DataFrame, file: &Path, p: &Pipeline) -> Result<(Vec<u16>, Vec<String>)> {
    let name = p.data.label_column();
    let col = df.column(name)?;
    let where_ = || format!("{}: column {name:?}", file.display());
    if col.dtype() == &DataType::String {
        let text: Vec<&str> = col
            .str()?
            .iter()
            .enumerate()
            .map(|(i, v)| v.ok_or_else(|| anyhow!("{}: row {i} has no label", where_())))
            .collect::<Result<_>>()?;
        let names: Vec<String> = if p.data.class_names.is_empty() {
            let set: BTreeSet<&str> = text.iter().copied().collect();
            set.into_iter().map(String::from).collect()
        } else {
            p.data.class_names.clone()
        };
        if names.len() > 65_536 {
            bail!("{}: more than 65536 classes", where_());
        }
        let labels = text
            .iter()
            .enumerate()
            .map(|(i, t)| {
                names
                    .iter()
                    .position(|n| n == t)
                    .map(|l| l as u16)
                    .ok_or_else(|| {
                        anyhow!(
                            "{}: label {t:?} of row {i} is not one of data.class_names",
                            where_()
                        )
                    })
            })
            .collect::<Result<_>>()?;
        return Ok((labels, names));
    }
    if !col.dtype().is_integer() {
        bail!(
            "{}: labels must be integers or text, not {}",
            where_(),
            col.dtype()
        );
    }
    let labels = col
        .cast(&DataType::Int64)?
        .i64()?
        .iter()
        .enumerate()
        .map(|(i, v)| match v {
            Some(v) if (0..65_536).contains(&v) => Ok(v as u16),
            Some(v) => Err(anyhow!(
                "{}: label {v} of row {i} is not in 0..65535",
                where_()
            )),
            None => Err(anyhow!("{}: row {i} has no label", where_())),
        })
        .collect::<Result<_>>()?;
    Ok((labels, p.data.class_names.clone()))
}

/// Channels, height and width for rows of `len` values.
fn shape(p: &Pipeline, len: usize, where_: &str) -> Result<(usize, usize, usize)> {
    let d = &p.data;
    let c = d.channels.unwrap_or(1);
    if let Some((h, w)) = d.height.zip(d.width) {
        if c * h * w != len {
            bail!(
                "{where_}: rows hold {len} values but data.channels × data.height × data.width = {c}×{h}×{w}"
            );
        }
        return Ok((c, h, w));
    }
    let side = ((len / c) as f64).sqrt().round() as usize;
    if len == 0 || !len.is_multiple_of(c) || side * side * c != len {
        bail!(
            "{where_}: rows hold {len} values, not {c} square image(s); set data.channels, data.height and data.width"
        );
    }
    Ok((c, side, side))
}

/// Read a table of samples: rows (id = row number) and the dataset's facts.
pub fn load(file: &Path, p: &Pipeline) -> Result<(Rows, DatasetMeta)> {
    let (label_col, pixel_col) = (p.data.label_column(), p.data.pixels_column());
    let df = read_frame(file, None)?;
    for (key, col) in [
        ("data.label_column", label_col),
        ("data.pixels_column", pixel_col),
    ] {
        if df.column(col).is_err() {
            bail!(
                "{}: no column {col:?} ({key}); its columns: {:?}",
                file.display(),
                df.get_column_names()
            );
        }
    }
    let n = df.height();
    if n == 0 {
        bail!("{}: the table has no rows", file.display());
    }
    if n > u32::MAX as usize / 2 {
        bail!("{}: too many rows for 32-bit ids", file.display());
    }
    let (labels, names) = labels(&df, file, p)?;
    two_labels(file, &[("table", &labels)])?;
    let where_ = format!("{}: column {pixel_col:?}", file.display());
    let (values, len) = pixel_values(&df, pixel_col, &where_, p)?;
    let (channels, height, width) = shape(p, len.unwrap_or(0), &where_)?;
    let classes = if names.is_empty() {
        class_count(p, file, &[("table", &labels)])?
    } else {
        names.len()
    };
    if let Some(i) = labels.iter().position(|&l| l as usize >= classes) {
        bail!(
            "{}: label {} of row {i} is not below the {classes} classes",
            file.display(),
            labels[i]
        );
    }
    let rows = Rows {
        ids: (0..n as u32).collect(),
        labels,
        pixels: Pixels::Floats(values),
        sources: (0..n).map(|i| format!("{}#{i}", file.display())).collect(),
    };
    let meta = DatasetMeta {
        dataset: p.data.dataset.clone(),
        channels,
        height,
        width,
        classes,
        class_names: names,
    };
    Ok((rows, meta))
}

/// Every row's pixels, scaled into [0, 1] (`data.scale`, else 1/255 for integers), one row
/// after another, and the values per row (`None`: no rows); every row of the same length.
fn pixel_values(
    df: &DataFrame,
    pixel_col: &str,
    where_: &str,
    p: &Pipeline,
) -> Result<(Vec<f32>, Option<usize>)> {
    let col = df.column(pixel_col)?;
    let inner = match col.dtype() {
        DataType::List(t) | DataType::Array(t, _) if t.is_primitive_numeric() => (**t).clone(),
        other => bail!("{where_}: pixels must be a list or array of numbers, not {other}"),
    };
    let scale = p
        .data
        .scale
        .unwrap_or(if inner.is_integer() { 1.0 / 255.0 } else { 1.0 }) as f32;
    let list = col
        .cast(&DataType::List(Box::new(DataType::Float32)))
        .with_context(|| where_.to_string())?;
    let mut values: Vec<f32> = Vec::new();
    let mut len = None;
    for (i, row) in list.list()?.amortized_iter().enumerate() {
        let row = row.ok_or_else(|| anyhow!("{where_}: row {i} has no pixels"))?;
        let row = row.as_ref();
        let want = *len.get_or_insert(row.len());
        if row.len() != want {
            bail!(
                "{where_}: row {i} has {} values but row 0 has {want}",
                row.len()
            );
        }
        for v in row.f32()?.iter() {
            match v {
                Some(v) if (0.0..=1.0).contains(&(v * scale)) => values.push(v * scale),
                Some(v) if (v * scale).is_finite() => bail!(
                    "{where_}: row {i} holds {v}, which is {} after scaling by {scale}: pixels must end in [0, 1] ({})",
                    v * scale,
                    if inner.is_integer() {
                        "integer pixels are 0–255 and scaled by 1/255; set data.scale for another range"
                    } else {
                        "float pixels are taken as they are; set data.scale, e.g. 0.00392156862745098 for 0–255"
                    }
                ),
                _ => bail!("{where_}: row {i} holds a missing or non-finite value"),
            }
        }
    }
    Ok((values, len))
}
