//! The steps through the in-memory store, on small hand-made artifacts whose outcome can be
//! checked by hand.

use super::{Step, Store, heatmap, layers, select};
use crate::arm::{Arm, Baseline};
use crate::artifacts::{
    Activations, DatasetMeta, DiagnosisRow, HeatmapRow, Heatmaps, LayerRow, Layout, OUTPUT,
    PoolRow, Samples, Split,
};
use crate::config::Pipeline;
use crate::vocab::{Action, Direction, MapKind, Metric, Origin, Space};
use ndarray::{Array2, arr2};
use std::collections::BTreeMap;

pub(super) fn meta(classes: usize, h: usize, w: usize) -> DatasetMeta {
    DatasetMeta {
        dataset: "t".into(),
        channels: 1,
        height: h,
        width: w,
        classes,
        class_names: vec![],
    }
}

pub(super) fn samples(ids: &[u32], labels: &[u16], pixels: Array2<f32>, classes: usize) -> Samples {
    Samples {
        meta: meta(classes, 1, pixels.ncols()),
        ids: ids.to_vec(),
        labels: labels.to_vec(),
        true_labels: labels.to_vec(),
        pixels,
        info: BTreeMap::new(),
    }
}

pub(super) fn store() -> (Store, Layout) {
    let layout = Layout::new("/nonexistent/mode-test");
    (Store::memory(layout.clone(), false), layout)
}

/// Pool: label 1 has ids 10 (pixels [1, 0]), 11 ([0.6, 0.4]), 12 ([0, 1]); label 0 has 20–23.
pub(super) fn pool() -> Samples {
    samples(
        &[10, 11, 12, 20, 21, 22, 23],
        &[1, 1, 1, 0, 0, 0, 0],
        arr2(&[
            [1.0, 0.0],
            [0.6, 0.4],
            [0.0, 1.0],
            [0.5, 0.5],
            [0.5, 0.5],
            [0.5, 0.5],
            [0.5, 0.5],
        ]),
        2,
    )
}

pub(super) fn diagnosis_faulty(label: u16) -> Vec<DiagnosisRow> {
    (0..2u16)
        .map(|l| DiagnosisRow {
            label: l,
            train_acc: 1.0,
            test_acc: if l == label { 0.5 } else { 1.0 },
            gap: 0.0,
            underfit: l == label,
            overfit: false,
            faultiest: l == label,
            action: if l == label {
                Action::FixUnderfit
            } else {
                Action::None
            },
            n_train: 10,
            n_test: 10,
            model_acc: if l == label { 0.5 } else { 1.0 },
            target_acc: if l == label { 0.5 } else { 1.0 },
            theta: 0.92,
            layer: crate::artifacts::OUTPUT.into(),
            decided_by: crate::vocab::Decider::Model,
            theta_above_all: false,
            few_candidates: false,
            batch_exceeds_pool: false,
        })
        .collect()
}

pub(super) fn hc_map(label: u16, values: Vec<f32>) -> Heatmaps {
    Heatmaps {
        rows: vec![HeatmapRow {
            label,
            other: None,
            kind: MapKind::Hc,
            space: Space::Input,
            layer: OUTPUT.into(),
            n: 5,
            values,
        }],
        info: BTreeMap::new(),
    }
}

pub(super) fn pipeline(batch: usize, alpha: f64) -> Pipeline {
    let mut p = Pipeline::default();
    p.mode.batch = crate::config::Amount::Count(batch);
    p.mode.alpha = alpha;
    p
}

#[test]
fn select_takes_the_most_similar_of_the_faulty_label() {
    let (store, layout) = store();
    let p = pipeline(4, 0.5);
    store.put(&layout.split(Split::Pool), pool()).unwrap();
    let s = Step::new(&layout, &p, Arm::mode(Metric::Dot, true), 1);
    store.put(&s.dir.diagnosis(), diagnosis_faulty(1)).unwrap();
    // HC of label 1 points along the first pixel: dot ranks 10 (1.0), 11 (0.6), 12 (0.0).
    store
        .put(&s.dir.heatmaps(), hc_map(1, vec![1.0, 0.0]))
        .unwrap();
    let sel = select::run(&store, &s).unwrap();
    let targeted: Vec<u32> = sel
        .batch
        .iter()
        .filter(|b| b.origin == Origin::Targeted)
        .map(|b| b.id)
        .collect();
    assert_eq!(
        targeted,
        [10, 11],
        "round(α · batch) = 2 most similar, best first"
    );
    assert_eq!(sel.batch.len(), 4);
    assert_eq!(sel.left.len(), 3);
    let left = store.get::<Vec<PoolRow>>(&s.dir.pool()).unwrap();
    assert!(left.iter().all(|r| !sel.batch.iter().any(|b| b.id == r.id)));
    let scores = store
        .get::<Vec<crate::artifacts::ScoreRow>>(&s.dir.scores())
        .unwrap();
    assert_eq!(
        scores.iter().map(|r| (r.id, r.rank)).collect::<Vec<_>>(),
        [(10, 1), (11, 2), (12, 3)]
    );
    // A distance ranks the other way round: Euclidean to [0, 1] prefers id 12.
    let s = Step::new(&layout, &p, Arm::mode(Metric::Euclidean, true), 1);
    store.put(&s.dir.diagnosis(), diagnosis_faulty(1)).unwrap();
    store
        .put(&s.dir.heatmaps(), hc_map(1, vec![0.0, 1.0]))
        .unwrap();
    let sel = select::run(&store, &s).unwrap();
    assert_eq!(sel.batch[0].id, 12);
}

#[test]
fn no_faulty_label_gives_an_empty_batch_and_random_ignores_the_diagnosis() {
    let (store, layout) = store();
    let p = pipeline(3, 0.5);
    store.put(&layout.split(Split::Pool), pool()).unwrap();
    let s = Step::new(&layout, &p, Arm::baseline(Baseline::LabelRandom), 1);
    let mut none = diagnosis_faulty(1);
    none.iter_mut().for_each(|r| {
        r.faultiest = false;
        r.underfit = false;
        r.action = Action::None;
    });
    store.put(&s.dir.diagnosis(), none).unwrap();
    let sel = select::run(&store, &s).unwrap();
    assert!(sel.batch.is_empty() && sel.left.len() == 7);
    let s = Step::new(&layout, &p, Arm::baseline(Baseline::Random), 1);
    let sel = select::run(&store, &s).unwrap();
    assert_eq!(sel.batch.len(), 3);
    assert!(sel.batch.iter().all(|b| b.origin == Origin::Random));
}

/// Activations whose first hidden layer separates the two classes perfectly.
fn acts(ids: &[u32], labels: &[u16]) -> Activations {
    let n = ids.len();
    let sep = Array2::from_shape_fn(
        (n, 2),
        |(i, j)| if labels[i] as usize == j { 3.0 } else { 0.0 },
    );
    let noise = Array2::from_shape_fn((n, 2), |(i, j)| ((i * 7 + j * 3) % 5) as f32 / 5.0);
    let probs = Array2::from_shape_fn((n, 2), |(i, j)| {
        // The model is right except on the last sample.
        let right = (labels[i] as usize == j) != (i == n - 1);
        if right { 0.9 } else { 0.1 }
    });
    Activations {
        ids: ids.to_vec(),
        labels: labels.to_vec(),
        predicted: (0..n)
            .map(|i| if i == n - 1 { 1 - labels[i] } else { labels[i] })
            .collect(),
        layers: vec![
            ("dense_1".into(), sep),
            ("dense_2".into(), noise),
            (OUTPUT.into(), probs),
        ],
        info: BTreeMap::new(),
    }
}

#[test]
fn layers_and_heatmaps_through_the_store() {
    let (store, layout) = store();
    let mut p = pipeline(2, 0.5);
    p.layers.threshold = 0.05;
    let n = 40usize;
    let ids: Vec<u32> = (0..n as u32).collect();
    let labels: Vec<u16> = (0..n).map(|i| (i % 2) as u16).collect();
    let pixels = Array2::from_shape_fn((n, 3), |(i, j)| ((i + j) % 3) as f32 / 2.0);
    let train = samples(&ids, &labels, pixels.clone(), 2);
    store
        .put(&layout.split(Split::Train), train.clone())
        .unwrap();
    store
        .put(&layout.split(Split::Pool), train.clone())
        .unwrap();
    store.put(&layout.split(Split::Test), train).unwrap();
    let s = Step::new(&layout, &p, Arm::mode(Metric::Dot, true), 1);
    store
        .put(&s.dir.activations("train"), acts(&ids, &labels))
        .unwrap();
    store
        .put(&s.dir.activations("test"), acts(&ids, &labels))
        .unwrap();
    let sel = layers::run(&store, &s).unwrap();
    let fwd: Vec<&LayerRow> = sel
        .rows
        .iter()
        .filter(|r| r.direction == Direction::Forward)
        .collect();
    assert_eq!(
        fwd.iter().map(|r| r.layer.as_str()).collect::<Vec<_>>(),
        ["input", "dense_1", "dense_2", "output"]
    );
    assert!(
        fwd[1].probe_accuracy > 0.99,
        "dense_1 separates the classes"
    );
    assert!(fwd.iter().filter(|r| r.is_target).count() == 1);
    assert!(store.has(&s.dir.head("dense_1")) && store.has(&layout.input_head()));
    // Heat maps at the output layer (layer selection off): the model misclassifies the last
    // sample (label 1, predicted 0).
    let mut q = p.clone();
    q.layers.enabled = false;
    let s = Step::new(&layout, &q, Arm::mode(Metric::Dot, false), 1);
    store
        .put(&s.dir.activations("train"), acts(&ids, &labels))
        .unwrap();
    store
        .put(&s.dir.activations("test"), acts(&ids, &labels))
        .unwrap();
    layers::run(&store, &s).unwrap();
    let a = heatmap::run(&store, &s).unwrap();
    assert_eq!(a.layer, OUTPUT);
    let hw = a.maps.get(1, MapKind::Hw).unwrap();
    assert_eq!((hw.n, hw.values.clone()), (1, pixels.row(n - 1).to_vec()));
    let hm = a.maps.get(0, MapKind::Hm).unwrap();
    assert_eq!(hm.n, 1, "label 0 received one false positive");
    let hc = a.maps.get(1, MapKind::Hc).unwrap();
    assert_eq!(hc.n, (n / 2 - 1) as u32);
    let d1 = &a.diagnosis[1];
    assert!((d1.test_acc - 19.0 / 20.0).abs() < 1e-12);
    assert_eq!(d1.underfit, d1.test_acc < d1.theta);
}
