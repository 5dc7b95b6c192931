//! Section 2: the shown arm's heat maps of the initial model, per label, and one HC_i − HC_k
//! pair (images for input-space maps, per-neuron strips for feature-space maps).

use super::Inputs;
use super::html::{esc, img};
use crate::artifacts::{Artifact, HeatmapRow};
use crate::model::{Net, Shape};
use crate::plots::{self, Tile};
use crate::vocab::{MapKind, Space};
use anyhow::Result;
use std::fmt::Write as _;

/// The kinds shown per label, in column order.
const KINDS: [MapKind; 5] = [
    MapKind::Hc,
    MapKind::Hm,
    MapKind::Hw,
    MapKind::DhCm,
    MapKind::DhCw,
];

/// Whether a kind is a difference of maps (drawn blue–white–red).
fn signed(kind: MapKind) -> bool {
    matches!(kind, MapKind::DhCm | MapKind::DhCw | MapKind::DhCc)
}

pub(super) fn section(cx: &Inputs) -> Result<String> {
    let space = cx.space();
    let layer = cx
        .maps
        .rows
        .first()
        .map_or(String::new(), |m| m.layer.clone());
    let mut html = String::new();
    let _ = write!(
        html,
        "<h2>Heat maps ({} space; inputs split by the {} layer's predictions)</h2><p>HC: correctly classified; HM: other labels predicted as the label (false positives); HW: the label's inputs predicted otherwise (false negatives); DH_CM = HC − HM, DH_CW = HC − HW (blue negative, red positive). n = group size.</p>",
        esc(space.as_str()),
        esc(&layer)
    );
    let (pi, pk) = cx.args.pair;
    let pair = cx
        .maps
        .rows
        .iter()
        .find(|m| m.kind == MapKind::DhCc && m.label == pi && m.other == Some(pk));
    if space == Space::Input {
        html += &images(cx, pair)?;
    } else if let Some(shape) = conv_shape(cx, &layer)? {
        html += &channels(cx, shape)?;
        html += &strips(cx, pair)?;
    } else {
        html += &strips(cx, pair)?;
    }
    Ok(html)
}

/// The channels × height × width of a convolution or pooling layer whose maps hold the full
/// feature maps (`probe.conv = "full"`); `None` for dense layers and per-channel means.
fn conv_shape(cx: &Inputs, layer: &str) -> Result<Option<(usize, usize, usize)>> {
    // A `mode debug` loop has no model of ours (an ONNX model's maps are drawn flat).
    let model = cx.layout.initial().model();
    if !model.exists() {
        return Ok(None);
    }
    let arch = Net::read(&model)?.arch;
    let shapes = arch.shapes()?;
    let Some((Some(i), _)) = arch.probed().into_iter().find(|(_, n)| n == layer) else {
        return Ok(None);
    };
    let width = cx.maps.rows.first().map_or(0, |m| m.values.len());
    Ok(match shapes[i] {
        Shape::Image(c, h, w) if c * h * w == width => Some((c, h, w)),
        _ => None,
    })
}

/// Convolutional heat maps with full feature maps: one small image per channel, a row per
/// label, for HC and for the differential map DH_CW.
fn channels(cx: &Inputs, (c, h, w): (usize, usize, usize)) -> Result<String> {
    let mut html = String::new();
    for kind in [MapKind::Hc, MapKind::DhCw] {
        let mut tiles = Vec::new();
        let mut titles = Vec::new();
        for l in cx.labels() {
            let Some(m) = cx.maps.get(l, kind) else {
                continue;
            };
            titles.push(format!("label {} {kind} n={}", cx.name_of(l), m.n));
            for ch in 0..c {
                tiles.push(Tile {
                    values: m.values[ch * h * w..(ch + 1) * h * w].to_vec(),
                    caption: format!("ch {ch}"),
                    signed: signed(kind),
                });
            }
        }
        let file = cx.figure(&format!("channels_{}", kind.as_str().to_lowercase()));
        plots::grid_png(
            &file,
            &tiles,
            (h, w),
            c,
            (84 / h.max(1)).clamp(2, 8) as i32,
            &titles,
        )?;
        let _ = write!(
            html,
            "<h3>{kind} per channel of the target layer (one {h}×{w} image per channel)</h3>"
        );
        html += &img(&file, &format!("{kind} per channel"));
    }
    Ok(html)
}

/// Input-space maps drawn as images: one row per label, and the pair beside its two HC maps.
fn images(cx: &Inputs, pair: Option<&HeatmapRow>) -> Result<String> {
    let mut tiles = Vec::new();
    let mut row_titles = Vec::new();
    for l in cx.labels() {
        row_titles.push(format!("label {}", cx.name_of(l)));
        for k in KINDS {
            if let Some(m) = cx.maps.get(l, k) {
                tiles.push(Tile {
                    values: m.values.clone(),
                    caption: format!("{k} n={}", m.n),
                    signed: signed(k),
                });
            }
        }
    }
    let file = cx.figure("heatmaps");
    plots::grid_png(&file, &tiles, cx.shape(), KINDS.len(), 3, &row_titles)?;
    let mut html = img(&file, "heat maps per label");
    let Some(m) = pair else {
        return Ok(html + &no_pair(cx));
    };
    let (pi, pk) = cx.args.pair;
    let hc = |l: u16| {
        cx.maps
            .get(l, MapKind::Hc)
            .map(|x| x.values.clone())
            .unwrap_or_default()
    };
    let t = [
        Tile {
            values: hc(pi),
            caption: format!("HC {pi}"),
            signed: false,
        },
        Tile {
            values: hc(pk),
            caption: format!("HC {pk}"),
            signed: false,
        },
        Tile {
            values: m.values.clone(),
            caption: format!("HC{pi} − HC{pk}"),
            signed: true,
        },
    ];
    let file = cx.figure("pair");
    plots::grid_png(&file, &t, cx.shape(), 3, 6, &[])?;
    let _ = write!(
        html,
        "<h3>HC<sub>{pi}</sub> − HC<sub>{pk}</sub> (choose with --pair i,k)</h3>"
    );
    html += &img(&file, "pair difference");
    Ok(html)
}

/// Feature-space maps: one strip of cells per map, one cell per neuron.
fn strips(cx: &Inputs, pair: Option<&HeatmapRow>) -> Result<String> {
    let strips: Vec<Tile> = cx
        .labels()
        .flat_map(|l| {
            KINDS.into_iter().filter_map(move |k| {
                cx.maps.get(l, k).map(|m| Tile {
                    values: m.values.clone(),
                    caption: format!("{l} {k} n={}", m.n),
                    signed: true,
                })
            })
        })
        .collect();
    let file = cx.figure("heatmaps");
    plots::strips_png(&file, &strips, 14)?;
    let mut html = img(&file, "feature-space heat maps as per-neuron strips");
    if let Some(m) = pair {
        let (pi, pk) = cx.args.pair;
        let file = cx.figure("pair");
        plots::strips_png(
            &file,
            &[Tile {
                values: m.values.clone(),
                caption: format!("HC{pi} − HC{pk}"),
                signed: true,
            }],
            14,
        )?;
        html += &img(&file, "pair difference");
    } else {
        html += &no_pair(cx);
    }
    Ok(html)
}

/// The note shown when the file holds no map of the asked pair.
fn no_pair(cx: &Inputs) -> String {
    let (pi, pk) = cx.args.pair;
    format!(
        "<p>No HC<sub>{pi}</sub> − HC<sub>{pk}</sub> map in this iteration's heat maps (choose another with --pair i,k).</p>"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_differences_are_signed() {
        assert_eq!(
            KINDS.map(signed),
            [false, false, false, true, true],
            "HC, HM, HW are means; DH_* are differences"
        );
        assert!(signed(MapKind::DhCc));
    }
}
