//! Reader for the idx format (MNIST, Fashion-MNIST, EMNIST, ...), gzip-compressed or raw.
//!
//! Only unsigned-byte idx files are accepted (type code 0x08), which is what every image
//! dataset in this format uses. Images may have any height × width; labels any number of
//! classes.

use flate2::read::GzDecoder;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Everything that can be wrong with an idx file. Every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum IdxError {
    #[error("{path}: cannot open: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: corrupt or truncated gzip stream ({source}); re-copy the file")]
    Gzip {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: wrong magic number {found:#010x}: expected {expected:#010x} ({what})")]
    Magic {
        path: PathBuf,
        found: u32,
        expected: u32,
        what: &'static str,
    },
    #[error("{path}: truncated: header promises {expected} bytes of data, file has {found}")]
    Truncated {
        path: PathBuf,
        expected: usize,
        found: usize,
    },
    #[error("{path}: {extra} bytes after the data the header describes; is this the right file?")]
    Trailing { path: PathBuf, extra: usize },
    #[error(
        "{images} has {n_images} images but {labels} has {n_labels} labels: the two files do not belong together"
    )]
    CountMismatch {
        images: PathBuf,
        n_images: usize,
        labels: PathBuf,
        n_labels: usize,
    },
    #[error(
        "no idx file {name}[.gz] in {dir}: pass --idx-dir DIR with the four idx files (train/t10k images and labels)"
    )]
    Missing { dir: PathBuf, name: String },
    #[error(
        "{path}: the header declares dimensions {dims:?}, more data than an idx file of this tool can hold ({limit} bytes); the file is corrupt or not an idx file"
    )]
    TooLarge {
        path: PathBuf,
        dims: Vec<usize>,
        limit: usize,
    },
    #[error(
        "{path}: the gzip stream expands to more than {limit} bytes; the file is corrupt or not an idx file"
    )]
    GzipTooLarge { path: PathBuf, limit: u64 },
    #[error(
        "{path}: label {label} at index {index} is not below the class count given ({classes})"
    )]
    LabelRange {
        path: PathBuf,
        label: u8,
        index: usize,
        classes: usize,
    },
}

/// A set of images with their labels.
#[derive(Debug, Clone, PartialEq)]
pub struct IdxImages {
    pub height: usize,
    pub width: usize,
    /// Row-major, `n × height × width` bytes.
    pub pixels: Vec<u8>,
    pub labels: Vec<u8>,
}

impl IdxImages {
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    /// Number of classes: one more than the largest label.
    pub fn classes(&self) -> usize {
        self.labels
            .iter()
            .copied()
            .max()
            .map_or(0, |m| m as usize + 1)
    }
}

/// The largest idx payload (and un-gzipped file) read: 8 GiB.
const MAX_BYTES: usize = 1 << 33;

const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Parse the bytes of an idx file whose magic must be `expected`; returns dims and data.
fn parse<'a>(
    path: &Path,
    bytes: &'a [u8],
    expected: u32,
    what: &'static str,
) -> Result<(Vec<usize>, &'a [u8]), IdxError> {
    let ndim = (expected & 0xff) as usize;
    let header = 4 + 4 * ndim;
    if bytes.len() < 4 {
        return Err(IdxError::Truncated {
            path: path.into(),
            expected: header,
            found: bytes.len(),
        });
    }
    let magic = be_u32(bytes);
    if magic != expected {
        return Err(IdxError::Magic {
            path: path.into(),
            found: magic,
            expected,
            what,
        });
    }
    if bytes.len() < header {
        return Err(IdxError::Truncated {
            path: path.into(),
            expected: header,
            found: bytes.len(),
        });
    }
    let dims: Vec<usize> = (0..ndim)
        .map(|i| be_u32(&bytes[4 + 4 * i..]) as usize)
        .collect();
    let n = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= MAX_BYTES)
        .ok_or_else(|| IdxError::TooLarge {
            path: path.into(),
            dims: dims.clone(),
            limit: MAX_BYTES,
        })?;
    let data = &bytes[header..];
    if data.len() < n {
        return Err(IdxError::Truncated {
            path: path.into(),
            expected: n,
            found: data.len(),
        });
    }
    if data.len() > n {
        return Err(IdxError::Trailing {
            path: path.into(),
            extra: data.len() - n,
        });
    }
    Ok((dims, data))
}

/// Parse an images file (magic 0x00000803) and a labels file (magic 0x00000801) from bytes.
pub fn parse_pair(
    images_path: &Path,
    images: &[u8],
    labels_path: &Path,
    labels: &[u8],
) -> Result<IdxImages, IdxError> {
    let (idims, ipix) = parse(
        images_path,
        images,
        IMAGES_MAGIC,
        "images: unsigned bytes, 3 dimensions",
    )?;
    let (ldims, lab) = parse(
        labels_path,
        labels,
        LABELS_MAGIC,
        "labels: unsigned bytes, 1 dimension",
    )?;
    if idims[0] != ldims[0] {
        return Err(IdxError::CountMismatch {
            images: images_path.into(),
            n_images: idims[0],
            labels: labels_path.into(),
            n_labels: ldims[0],
        });
    }
    Ok(IdxImages {
        height: idims[1],
        width: idims[2],
        pixels: ipix.to_vec(),
        labels: lab.to_vec(),
    })
}

/// Read a whole file, un-gzipping it when it starts with the gzip magic.
pub fn read_maybe_gz(path: &Path) -> Result<Vec<u8>, IdxError> {
    let raw = std::fs::read(path).map_err(|source| IdxError::Open {
        path: path.into(),
        source,
    })?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity(raw.len() * 4);
        GzDecoder::new(&raw[..])
            .take(MAX_BYTES as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|source| IdxError::Gzip {
                path: path.into(),
                source,
            })?;
        if out.len() > MAX_BYTES {
            return Err(IdxError::GzipTooLarge {
                path: path.into(),
                limit: MAX_BYTES as u64,
            });
        }
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// Find `<dir>/<name>` or `<dir>/<name>.gz`.
pub fn locate(dir: &Path, name: &str) -> Result<PathBuf, IdxError> {
    for candidate in [dir.join(format!("{name}.gz")), dir.join(name)] {
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(IdxError::Missing {
        dir: dir.into(),
        name: name.into(),
    })
}

/// Load an images/labels pair from files.
pub fn load_pair(images: &Path, labels: &Path) -> Result<IdxImages, IdxError> {
    let ib = read_maybe_gz(images)?;
    let lb = read_maybe_gz(labels)?;
    parse_pair(images, &ib, labels, &lb)
}

/// The standard train and test sets of an idx folder (MNIST file names).
pub fn load_dir(dir: &Path) -> Result<(IdxImages, IdxImages), IdxError> {
    let ti = locate(dir, "train-images-idx3-ubyte")?;
    let tl = locate(dir, "train-labels-idx1-ubyte")?;
    let si = locate(dir, "t10k-images-idx3-ubyte")?;
    let sl = locate(dir, "t10k-labels-idx1-ubyte")?;
    Ok((load_pair(&ti, &tl)?, load_pair(&si, &sl)?))
}

/// Encode images and labels as idx bytes (used by tests and fixtures).
pub fn encode_pair(
    height: usize,
    width: usize,
    pixels: &[u8],
    labels: &[u8],
) -> (Vec<u8>, Vec<u8>) {
    let n = labels.len() as u32;
    let mut i = Vec::with_capacity(16 + pixels.len());
    i.extend_from_slice(&IMAGES_MAGIC.to_be_bytes());
    i.extend_from_slice(&n.to_be_bytes());
    i.extend_from_slice(&(height as u32).to_be_bytes());
    i.extend_from_slice(&(width as u32).to_be_bytes());
    i.extend_from_slice(pixels);
    let mut l = Vec::with_capacity(8 + labels.len());
    l.extend_from_slice(&LABELS_MAGIC.to_be_bytes());
    l.extend_from_slice(&n.to_be_bytes());
    l.extend_from_slice(labels);
    (i, l)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compression, write::GzEncoder};
    use std::io::Write;

    fn sample() -> (Vec<u8>, Vec<u8>) {
        let pixels: Vec<u8> = (0..3 * 2 * 4).map(|v| v as u8).collect();
        encode_pair(2, 4, &pixels, &[0, 2, 1])
    }

    fn gz(b: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::fast());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn parses_any_shape() {
        let (i, l) = sample();
        let d = parse_pair(Path::new("i"), &i, Path::new("l"), &l).unwrap();
        assert_eq!((d.height, d.width, d.len(), d.classes()), (2, 4, 3, 3));
        assert_eq!(d.pixels[8], 8);
    }

    #[test]
    fn reads_gzip_and_raw_files() {
        let dir = tempfile::tempdir().unwrap();
        let (i, l) = sample();
        std::fs::write(dir.path().join("train-images-idx3-ubyte.gz"), gz(&i)).unwrap();
        std::fs::write(dir.path().join("train-labels-idx1-ubyte"), &l).unwrap();
        std::fs::write(dir.path().join("t10k-images-idx3-ubyte"), &i).unwrap();
        std::fs::write(dir.path().join("t10k-labels-idx1-ubyte.gz"), gz(&l)).unwrap();
        let (tr, te) = load_dir(dir.path()).unwrap();
        assert_eq!(tr, te);
    }

    #[test]
    fn crafted_dimensions_overflow_cleanly() {
        let mut i = IMAGES_MAGIC.to_be_bytes().to_vec();
        for d in [1u32 << 22, 1 << 21, 1 << 21] {
            i.extend_from_slice(&d.to_be_bytes());
        }
        let err = parse_pair(Path::new("i"), &i, Path::new("l"), &[]).unwrap_err();
        assert!(matches!(err, IdxError::TooLarge { .. }), "{err}");
        let mut i = IMAGES_MAGIC.to_be_bytes().to_vec();
        for d in [u32::MAX, u32::MAX, u32::MAX] {
            i.extend_from_slice(&d.to_be_bytes());
        }
        let err = parse_pair(Path::new("i"), &i, Path::new("l"), &[]).unwrap_err();
        assert!(err.to_string().contains("corrupt"), "{err}");
    }

    #[test]
    fn wrong_magic() {
        let (i, l) = sample();
        let err = parse_pair(Path::new("imgs"), &l, Path::new("labs"), &i).unwrap_err();
        assert!(matches!(err, IdxError::Magic { .. }), "{err}");
        assert!(err.to_string().starts_with("imgs: wrong magic"), "{err}");
    }

    #[test]
    fn truncated_data_and_header() {
        let (i, l) = sample();
        let err = parse_pair(Path::new("i"), &i[..i.len() - 1], Path::new("l"), &l).unwrap_err();
        assert!(matches!(err, IdxError::Truncated { .. }), "{err}");
        let err = parse_pair(Path::new("i"), &i[..6], Path::new("l"), &l).unwrap_err();
        assert!(matches!(err, IdxError::Truncated { .. }), "{err}");
        let mut long = i.clone();
        long.push(0);
        let err = parse_pair(Path::new("i"), &long, Path::new("l"), &l).unwrap_err();
        assert!(matches!(err, IdxError::Trailing { .. }), "{err}");
    }

    #[test]
    fn count_mismatch() {
        let (i, _) = sample();
        let (_, l2) = encode_pair(2, 4, &[0; 16], &[0, 1]);
        let err = parse_pair(Path::new("i"), &i, Path::new("l"), &l2).unwrap_err();
        assert!(
            matches!(
                err,
                IdxError::CountMismatch {
                    n_images: 3,
                    n_labels: 2,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn truncated_gzip() {
        let dir = tempfile::tempdir().unwrap();
        let (i, _) = sample();
        let z = gz(&i);
        let p = dir.path().join("x.gz");
        std::fs::write(&p, &z[..z.len() / 2]).unwrap();
        let err = read_maybe_gz(&p).unwrap_err();
        assert!(matches!(err, IdxError::Gzip { .. }), "{err}");
        assert!(err.to_string().contains("x.gz"));
    }

    #[test]
    fn missing_file_names_dir() {
        let dir = tempfile::tempdir().unwrap();
        let err = load_dir(dir.path()).unwrap_err();
        assert!(matches!(err, IdxError::Missing { .. }));
        assert!(err.to_string().contains("--idx-dir"));
    }
}
