//! An image folder: `ROOT/<class name>/*.png|jpg|jpeg`, classes sorted by name, files by name.
//!
//! Images are decoded with the `image` crate (in parallel), turned to grayscale or RGB
//! (`data.channels`; unset: RGB if any image has colour, else grayscale), resized to
//! `data.height` × `data.width` with a triangle filter (unset: every image must have the first
//! image's size), and stored channel-major (C × H × W) as bytes, read as /255.

use super::{Pixels, Rows};
use crate::artifacts::DatasetMeta;
use crate::config::Pipeline;
use anyhow::{Context, Result, anyhow, bail};
use image::DynamicImage;
use image::imageops::FilterType;
use rayon::prelude::*;
use std::path::{Path, PathBuf};

const EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// The entries of a folder, sorted by name, hidden ones left out, each with what it is (links
/// followed). An entry that cannot be followed — a dangling or looping symbolic link — is an
/// error naming it, never skipped.
fn entries(dir: &Path) -> Result<Vec<(PathBuf, std::fs::Metadata)>> {
    let mut v: Vec<PathBuf> = Vec::new();
    for e in std::fs::read_dir(dir)
        .with_context(|| format!("cannot read the image folder {}", dir.display()))?
    {
        let e = e.with_context(|| format!("cannot read the image folder {}", dir.display()))?;
        if !e.file_name().to_string_lossy().starts_with('.') {
            v.push(e.path());
        }
    }
    v.sort();
    v.into_iter()
        .map(|p| match std::fs::metadata(&p) {
            Ok(m) => Ok((p, m)),
            Err(e) => Err(anyhow!(
                "{}: cannot be read ({e}); a dangling or looping symbolic link? Remove it or point it at an image",
                p.display()
            )),
        })
        .collect()
}

fn decode(path: &Path) -> Result<DynamicImage> {
    image::io::Reader::open(path)
        .and_then(|r| r.with_guessed_format())
        .map_err(image::ImageError::from)
        .and_then(|r| r.decode())
        .map_err(|e| anyhow!("{}: cannot read the image: {e}", path.display()))
}

/// The class folders and their image files.
fn listing(root: &Path) -> Result<Vec<(String, Vec<PathBuf>)>> {
    let mut classes = Vec::new();
    for (dir, _) in entries(root)?.into_iter().filter(|(_, m)| m.is_dir()) {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let mut files: Vec<PathBuf> = Vec::new();
        for (p, m) in entries(&dir)? {
            if !is_image(&p) {
                continue;
            }
            if !m.is_file() {
                bail!("{}: named as an image but not a file", p.display());
            }
            files.push(p);
        }
        if files.is_empty() {
            bail!(
                "{}: the class folder {name:?} holds no .png or .jpg images",
                dir.display()
            );
        }
        classes.push((name, files));
    }
    if classes.is_empty() {
        bail!(
            "{}: no class folders; an image folder is ROOT/<class name>/*.png|jpg",
            root.display()
        );
    }
    if classes.len() == 1 {
        bail!(
            "{}: one class folder ({:?}); a classifier needs at least two classes, one folder each",
            root.display(),
            classes[0].0
        );
    }
    Ok(classes)
}

/// Read an image folder: rows (id = position in class-name, then file-name order) and the
/// dataset's facts.
pub fn load(root: &Path, p: &Pipeline) -> Result<(Rows, DatasetMeta)> {
    let d = &p.data;
    let classes = listing(root)?;
    let names: Vec<String> = classes.iter().map(|(n, _)| n.clone()).collect();
    check_classes(root, p, &names)?;
    let files: Vec<(u16, &PathBuf)> = classes
        .iter()
        .enumerate()
        .flat_map(|(label, (_, f))| f.iter().map(move |p| (label as u16, p)))
        .collect();
    if files.len() > u32::MAX as usize / 2 {
        bail!("{}: too many images for 32-bit ids", root.display());
    }
    // The size every image gets: declared, or the first image's.
    let (first, declared) = (files[0].1, d.height.zip(d.width));
    let (h, w) = match declared {
        Some(hw) => hw,
        None => {
            let (w, h) = image::image_dimensions(first)
                .map_err(|e| anyhow!("{}: cannot read the image: {e}", first.display()))?;
            (h as usize, w as usize)
        }
    };
    // Decode, then grayscale or RGB, then resize: (has colour, C × H × W bytes at 1 or 3
    // channels).
    let decoded = decode_all(&files, p, declared, (h, w))?;
    let channels = d.channels.unwrap_or(if decoded.iter().any(|(c, _, _)| *c) {
        3
    } else {
        1
    });
    let pixels = channel_major(&decoded, channels, h * w);
    let rows = Rows {
        ids: (0..files.len() as u32).collect(),
        labels: files.iter().map(|(l, _)| *l).collect(),
        pixels: Pixels::Bytes(pixels),
        sources: files.iter().map(|(_, p)| p.display().to_string()).collect(),
    };
    let meta = DatasetMeta {
        dataset: d.dataset.clone(),
        channels,
        height: h,
        width: w,
        classes: names.len(),
        class_names: names,
    };
    Ok((rows, meta))
}

/// The class folders agree with `data.class_names` and `data.classes`, and fit 16-bit labels.
fn check_classes(root: &Path, p: &Pipeline, names: &[String]) -> Result<()> {
    let d = &p.data;
    if !d.class_names.is_empty() && d.class_names != names {
        bail!(
            "{}: the class folders are {names:?} but data.class_names = {:?}; leave data.class_names out (the folder names are the class names) or make them agree",
            root.display(),
            d.class_names
        );
    }
    if let Some(c) = d.classes
        && c != names.len()
    {
        bail!(
            "{}: {} class folders but data.classes = {c}",
            root.display(),
            names.len()
        );
    }
    if names.len() > 65_536 {
        bail!("{}: more than 65536 class folders", root.display());
    }
    Ok(())
}

/// One image decoded: whether it has colour, and its pixels at the size every image gets, as
/// RGB or (with `data.channels = 1`) as grayscale.
type Decoded = (bool, image::RgbImage, Option<image::GrayImage>);

/// Decode every image (in parallel), then grayscale or RGB, then resize to `h × w`; without a
/// declared size every image must be the first one's.
fn decode_all(
    files: &[(u16, &PathBuf)],
    p: &Pipeline,
    declared: Option<(usize, usize)>,
    (h, w): (usize, usize),
) -> Result<Vec<Decoded>> {
    let d = &p.data;
    let first = files[0].1;
    files
        .par_iter()
        .map(|(_, path)| {
            let img = decode(path)?;
            if declared.is_none() && (img.height() as usize, img.width() as usize) != (h, w) {
                bail!(
                    "{}: the image is {}×{} but {} is {h}×{w}; set data.height and data.width to resize every image",
                    path.display(),
                    img.height(),
                    img.width(),
                    first.display()
                );
            }
            let fit = |i: DynamicImage| {
                if (i.height() as usize, i.width() as usize) == (h, w) {
                    i
                } else {
                    i.resize_exact(w as u32, h as u32, FilterType::Triangle)
                }
            };
            let colour = img.color().has_color();
            Ok(match d.channels {
                Some(1) => (
                    colour,
                    image::RgbImage::new(0, 0),
                    Some(fit(DynamicImage::ImageLuma8(img.to_luma8())).to_luma8()),
                ),
                _ => (
                    colour,
                    fit(DynamicImage::ImageRgb8(img.to_rgb8())).to_rgb8(),
                    None,
                ),
            })
        })
        .collect()
}

/// The images' pixels channel-major (C × H × W bytes each, `plane` = H × W), one image after
/// another.
fn channel_major(decoded: &[Decoded], channels: usize, plane: usize) -> Vec<u8> {
    let mut pixels = vec![0u8; decoded.len() * channels * plane];
    for (k, (_, rgb, gray)) in decoded.iter().enumerate() {
        let dst = &mut pixels[k * channels * plane..(k + 1) * channels * plane];
        match gray {
            Some(g) => dst.copy_from_slice(g.as_raw()),
            None => {
                // Interleaved RGB → channel-major; grayscale images have R = G = B.
                for (i, px) in rgb.as_raw().chunks(3).enumerate() {
                    for c in 0..channels {
                        dst[c * plane + i] = px[c];
                    }
                }
            }
        }
    }
    pixels
}
