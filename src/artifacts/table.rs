//! Table artifacts: plain-column Parquet tables written and read with polars. A row type
//! declared with [`table!`] knows its columns; categorical columns are [`TextEnum`]s stored as
//! text and checked when read.

use super::io::{open, write_atomic};
use crate::text_enum::TextEnum;
use anyhow::{Context, Result, anyhow};
use polars::prelude::{
    Column, DataFrame, DataType as PlType, ParquetCompression, ParquetReader, ParquetWriter,
    SerReader,
};
use std::path::Path;

/// Write a polars table atomically (Snappy-compressed Parquet).
///
/// Through a buffer: polars' writer serialises the footer's Thrift a field at a time, which
/// straight to the file was a `write` call of one or two bytes each (≈ 1 800 calls for one
/// iteration's metrics table of a few kilobytes).
pub fn write_frame(path: &Path, df: &mut DataFrame) -> Result<()> {
    write_atomic(path, |file| {
        let mut out = std::io::BufWriter::with_capacity(1 << 16, file);
        ParquetWriter::new(&mut out)
            .with_compression(ParquetCompression::Snappy)
            .finish(df)?;
        out.into_inner()
            .map_err(|e| e.into_error())
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(())
    })
}

/// Read a whole table (or only `cols`).
pub fn read_frame(path: &Path, cols: Option<&[&str]>) -> Result<DataFrame> {
    let file = open(path)?;
    let mut r = ParquetReader::new(file);
    if let Some(c) = cols {
        r = r.with_columns(Some(c.iter().map(|s| s.to_string()).collect()));
    }
    r.finish()
        .with_context(|| format!("{} is not a readable Parquet table", path.display()))
}

/// A value type a table column holds.
pub trait Cell: Sized + Clone {
    fn read(df: &DataFrame, name: &str) -> Result<Vec<Self>>;
    fn column(name: &str, values: Vec<Self>) -> Column;
}

fn cast(df: &DataFrame, name: &str, dt: PlType) -> Result<Column> {
    let c = df
        .column(name)
        .map_err(|_| anyhow!("missing column {name:?} (has {:?})", df.get_column_names()))?;
    c.cast(&dt)
        .with_context(|| format!("column {name:?} cannot be read as {dt}"))
}

macro_rules! cell {
    ($t:ty, $pl:expr, $acc:ident, $finite:expr) => {
        impl Cell for $t {
            fn read(df: &DataFrame, name: &str) -> Result<Vec<Self>> {
                let c = cast(df, name, $pl)?;
                c.$acc()?
                    .iter()
                    .enumerate()
                    .map(|(i, v)| match v {
                        None => Err(anyhow!("column {name:?} has a null in row {i}")),
                        Some(v) if !$finite(v) => {
                            Err(anyhow!("column {name:?} has a non-finite value in row {i}"))
                        }
                        Some(v) => Ok(v),
                    })
                    .collect()
            }
            fn column(name: &str, values: Vec<Self>) -> Column {
                Column::new(name.into(), values)
            }
        }
        impl Cell for Option<$t> {
            fn read(df: &DataFrame, name: &str) -> Result<Vec<Self>> {
                let c = cast(df, name, $pl)?;
                c.$acc()?
                    .iter()
                    .enumerate()
                    .map(|(i, v)| match v {
                        Some(v) if !$finite(v) => {
                            Err(anyhow!("column {name:?} has a non-finite value in row {i}"))
                        }
                        v => Ok(v),
                    })
                    .collect()
            }
            fn column(name: &str, values: Vec<Self>) -> Column {
                Column::new(name.into(), values)
            }
        }
    };
}
fn any<T>(_: T) -> bool {
    true
}
cell!(u16, PlType::UInt16, u16, any);
cell!(u32, PlType::UInt32, u32, any);
cell!(i64, PlType::Int64, i64, any);
cell!(f64, PlType::Float64, f64, f64::is_finite);
cell!(bool, PlType::Boolean, bool, any);

impl Cell for String {
    fn read(df: &DataFrame, name: &str) -> Result<Vec<Self>> {
        let c = cast(df, name, PlType::String)?;
        c.str()?
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.map(String::from)
                    .ok_or_else(|| anyhow!("column {name:?} has a null in row {i}"))
            })
            .collect()
    }
    fn column(name: &str, values: Vec<Self>) -> Column {
        Column::new(name.into(), values)
    }
}

/// A nullable list of finite floats (`List<Float64>`), e.g. a part's per-label accuracies.
impl Cell for Option<Vec<f64>> {
    fn read(df: &DataFrame, name: &str) -> Result<Vec<Self>> {
        let c = cast(df, name, PlType::List(Box::new(PlType::Float64)))?;
        c.list()?
            .series_iter()
            .enumerate()
            .map(|(i, v)| {
                let Some(s) = v else { return Ok(None) };
                s.f64()?
                    .iter()
                    .map(|x| match x {
                        Some(x) if x.is_finite() => Ok(x),
                        Some(_) => {
                            Err(anyhow!("column {name:?} has a non-finite value in row {i}"))
                        }
                        None => Err(anyhow!("column {name:?} has a null in the list of row {i}")),
                    })
                    .collect::<Result<Vec<f64>>>()
                    .map(Some)
            })
            .collect()
    }
    fn column(name: &str, values: Vec<Self>) -> Column {
        use polars::prelude::{NamedFrom, Series};
        let lists: Vec<Option<Series>> = values
            .into_iter()
            .map(|v| v.map(|v| Series::new("".into(), v)))
            .collect();
        let list = PlType::List(Box::new(PlType::Float64));
        let s = Series::new(name.into(), lists);
        // An all-null or empty column is typed by its values as Null: give it its type.
        Column::from(
            s.cast(&list)
                .expect("a list of floats casts to List<Float64>"),
        )
    }
}

impl<T: TextEnum> Cell for T {
    fn read(df: &DataFrame, name: &str) -> Result<Vec<Self>> {
        let text = <String as Cell>::read(df, name)?;
        text.iter()
            .enumerate()
            .map(|(i, s)| T::parse_or_err(s).with_context(|| format!("column {name:?}, row {i}")))
            .collect()
    }
    fn column(name: &str, values: Vec<Self>) -> Column {
        Column::new(
            name.into(),
            values.iter().map(|v| v.as_str()).collect::<Vec<&str>>(),
        )
    }
}

/// Write rows with extra text columns after the row type's own (an ablation's setting keys).
pub fn write_frame_with<T: Table>(
    path: &Path,
    rows: &[T],
    extra: Vec<(String, Vec<String>)>,
) -> Result<()> {
    let mut df = T::to_frame(rows)?;
    for (name, values) in extra {
        df.with_column(Column::new(name.as_str().into(), values))?;
    }
    write_frame(path, &mut df)
}

/// A row type stored as a polars table.
pub trait Table: Sized {
    const COLUMNS: &'static [&'static str];
    fn to_frame(rows: &[Self]) -> Result<DataFrame>;
    fn from_frame(df: &DataFrame) -> Result<Vec<Self>>;
}

/// Declare a row type and its table: one field per column, in order.
#[macro_export]
macro_rules! table {
    ($(#[$m:meta])* $name:ident { $($(#[$fm:meta])* $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq)]
        pub struct $name { $($(#[$fm])* pub $field: $ty),* }
        impl $crate::artifacts::table::Table for $name {
            const COLUMNS: &'static [&'static str] = &[$(stringify!($field)),*];
            fn to_frame(rows: &[Self]) -> anyhow::Result<polars::prelude::DataFrame> {
                let cols = vec![$(
                    <$ty as $crate::artifacts::table::Cell>::column(
                        stringify!($field),
                        rows.iter().map(|r| r.$field.clone()).collect::<Vec<$ty>>(),
                    )
                ),*];
                Ok(polars::prelude::DataFrame::new(rows.len(), cols)?)
            }
            fn from_frame(df: &polars::prelude::DataFrame) -> anyhow::Result<Vec<Self>> {
                $( let $field: Vec<$ty> = <$ty as $crate::artifacts::table::Cell>::read(df, stringify!($field))?; )*
                Ok((0..df.height()).map(|i| $name { $($field: $field[i].clone()),* }).collect())
            }
        }
        impl $crate::artifacts::Artifact for Vec<$name> {
            fn read(path: &std::path::Path) -> anyhow::Result<Self> {
                use anyhow::Context as _;
                <$name as $crate::artifacts::table::Table>::from_frame(
                    &$crate::artifacts::table::read_frame(path, None)?,
                )
                .with_context(|| format!("reading {}", path.display()))
            }
            fn write(&self, path: &std::path::Path) -> anyhow::Result<()> {
                $crate::artifacts::table::write_frame(
                    path,
                    &mut <$name as $crate::artifacts::table::Table>::to_frame(self)?,
                )
            }
        }
    };
}
