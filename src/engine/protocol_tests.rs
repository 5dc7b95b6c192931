//! The protocol keys and the baselines through the in-memory store, on hand-made artifacts.

use super::tests::{diagnosis_faulty, hc_map, pipeline, pool, samples, store};
use super::{Step, select, train};
use crate::arm::{Arm, Baseline};
use crate::artifacts::{
    Activations, BatchRow, DiagnosisRow, HeatmapRow, OUTPUT, Split, TrainLogRow,
};
use crate::config::{EmptyMap, OnFinish, Order, RandomFill, RetrainData, RetrainInit, Targets};
use crate::model::OptimState;
use crate::vocab::{Action, MapKind, Metric, Origin, Space};
use ndarray::{Array2, arr2};
use std::collections::BTreeMap;

fn labels_of(sel: &select::Selection, label: u16) -> usize {
    sel.batch.iter().filter(|b| b.label == label).count()
}

#[test]
fn random_fill_excludes_the_targeted_label_or_not() {
    // 30 samples of label 1, 30 of label 0: α·batch = 2 targeted of a batch of 20.
    let ids: Vec<u32> = (0..60).collect();
    let labels: Vec<u16> = (0..60).map(|i| (i % 2) as u16).collect();
    let big = samples(&ids, &labels, Array2::from_elem((60, 2), 0.5), 2);
    let (store, layout) = store();
    store.put(&layout.split(Split::Pool), big).unwrap();
    let mut p = pipeline(20, 0.1);
    for (fill, exact) in [(RandomFill::ExcludeTarget, true), (RandomFill::Any, false)] {
        p.select.random_fill = fill;
        let s = Step::new(&layout, &p, Arm::baseline(Baseline::LabelRandom), 1);
        store.put(&s.dir.diagnosis(), diagnosis_faulty(1)).unwrap();
        let sel = select::run(&store, &s).unwrap();
        assert_eq!(sel.batch.len(), 20);
        if exact {
            assert_eq!(labels_of(&sel, 1), 2, "exactly α of the batch");
        } else {
            assert!(
                labels_of(&sel, 1) > 2,
                "the random share also draws label 1"
            );
        }
    }
}

#[test]
fn order_least_takes_the_least_similar() {
    let (store, layout) = store();
    let mut p = pipeline(2, 0.5);
    p.select.order = Order::Least;
    store.put(&layout.split(Split::Pool), pool()).unwrap();
    let s = Step::new(&layout, &p, Arm::mode(Metric::Dot, true), 1);
    store.put(&s.dir.diagnosis(), diagnosis_faulty(1)).unwrap();
    store
        .put(&s.dir.heatmaps(), hc_map(1, vec![1.0, 0.0]))
        .unwrap();
    let sel = select::run(&store, &s).unwrap();
    assert_eq!(sel.batch[0].id, 12, "dot 0.0: the least similar");
}

#[test]
fn all_faulty_targets_share_by_deficit() {
    let (store, layout) = store();
    let mut p = pipeline(4, 1.0);
    p.select.targets = Targets::AllFaulty;
    store.put(&layout.split(Split::Pool), pool()).unwrap();
    let s = Step::new(&layout, &p, Arm::baseline(Baseline::LabelRandom), 1);
    let mut d = diagnosis_faulty(0);
    d[0].test_acc = 0.52; // deficit 0.40
    d[1].underfit = true; // label 1 too: deficit 0.92 − 0.82 = 0.10
    d[1].test_acc = 0.82;
    d[1].action = Action::FixUnderfit;
    store.put(&s.dir.diagnosis(), d).unwrap();
    let sel = select::run(&store, &s).unwrap();
    assert_eq!(
        (labels_of(&sel, 0), labels_of(&sel, 1)),
        (3, 1),
        "4 split 0.4 : 0.1"
    );
    assert_eq!(sel.faulty_label, Some(0), "the faultiest first");
}

fn with_empty_hc(store: &super::Store, s: &Step) {
    let mut maps = hc_map(1, vec![1.0, 0.0]);
    maps.rows[0].n = 0;
    maps.rows.push(HeatmapRow {
        label: 1,
        other: None,
        kind: MapKind::Hw,
        space: Space::Input,
        layer: OUTPUT.into(),
        n: 3,
        values: vec![0.0, 1.0],
    });
    store.put(&s.dir.heatmaps(), maps).unwrap();
    store.put(&s.dir.diagnosis(), diagnosis_faulty(1)).unwrap();
}

#[test]
fn an_empty_map_falls_back_as_configured() {
    let (store, layout) = store();
    store.put(&layout.split(Split::Pool), pool()).unwrap();
    let mut p = pipeline(2, 0.5);
    let arm = Arm::mode(Metric::Dot, true);
    p.select.empty_map = EmptyMap::Error;
    let s = Step::new(&layout, &p, arm, 1);
    with_empty_hc(&store, &s);
    let e = select::run(&store, &s).unwrap_err().to_string();
    assert!(e.contains("empty") && e.contains("select.empty_map"), "{e}");
    p.select.empty_map = EmptyMap::Hw;
    let s = Step::new(&layout, &p, arm, 1);
    with_empty_hc(&store, &s);
    let sel = select::run(&store, &s).unwrap();
    assert_eq!(sel.batch[0].id, 12, "scored against HW = [0, 1]");
    p.select.empty_map = EmptyMap::Random;
    let s = Step::new(&layout, &p, arm, 1);
    with_empty_hc(&store, &s);
    let sel = select::run(&store, &s).unwrap();
    assert_eq!(labels_of(&sel, 1), 1, "one random candidate of the label");
}

#[test]
fn finished_early_stops_or_spends_the_batch_at_random() {
    let (store, layout) = store();
    store.put(&layout.split(Split::Pool), pool()).unwrap();
    let mut p = pipeline(3, 0.5);
    let none: Vec<DiagnosisRow> = diagnosis_faulty(1)
        .into_iter()
        .map(|mut r| {
            r.faultiest = false;
            r.underfit = false;
            r.action = Action::None;
            r
        })
        .collect();
    for (on_finish, n) in [(OnFinish::Stop, 0), (OnFinish::Random, 3)] {
        p.mode.on_finish = on_finish;
        let s = Step::new(&layout, &p, Arm::baseline(Baseline::LabelRandom), 1);
        store.put(&s.dir.diagnosis(), none.clone()).unwrap();
        let sel = select::run(&store, &s).unwrap();
        assert_eq!(sel.batch.len(), n);
        assert!(sel.batch.iter().all(|b| b.origin == Origin::Random));
    }
}

/// Pool activations: probabilities (margin) and one hidden layer (core-set, BADGE).
fn pool_acts() -> Activations {
    let p = pool();
    let probs = arr2(&[
        [0.1f32, 0.9],
        [0.5, 0.5],
        [0.45, 0.55],
        [0.99, 0.01],
        [0.9, 0.1],
        [0.6, 0.4],
        [0.95, 0.05],
    ]);
    let hidden = p.pixels.clone() * 10.0;
    Activations {
        ids: p.ids.clone(),
        labels: p.labels.clone(),
        predicted: vec![1, 0, 1, 0, 0, 0, 0],
        layers: vec![("dense_1".into(), hidden), (OUTPUT.into(), probs)],
        info: BTreeMap::new(),
    }
}

#[test]
fn uncertainty_baselines_take_the_most_uncertain() {
    let (store, layout) = store();
    store.put(&layout.split(Split::Pool), pool()).unwrap();
    let p = pipeline(2, 0.5);
    for (b, want) in [
        (Baseline::Margin, 11),
        (Baseline::Entropy, 11),
        (Baseline::LeastConfidence, 11),
        (Baseline::Uncertainty, 11),
        (Baseline::LabelMargin, 11),
    ] {
        let s = Step::new(&layout, &p, Arm::baseline(b), 1);
        store.put(&s.dir.diagnosis(), diagnosis_faulty(1)).unwrap();
        store.put(&s.dir.activations("pool"), pool_acts()).unwrap();
        let sel = select::run(&store, &s).unwrap();
        assert_eq!(sel.batch[0].id, want, "{b}");
        assert_eq!(sel.batch[0].origin, Origin::Targeted);
    }
}

#[test]
fn each_uncertainty_baseline_takes_its_own_sample() {
    // Ids 10, 11, 12, 20: no margin, the lowest top probability, the most impurity 1 − Σp²,
    // the most entropy; ids 21–23 confident.
    let (store, layout) = store();
    store.put(&layout.split(Split::Pool), pool()).unwrap();
    let p = pipeline(2, 0.5);
    let mut acts = pool_acts();
    let mut probs = Array2::<f32>::zeros((7, 8));
    let rows: [&[f32]; 4] = [
        &[0.5, 0.5],
        &[0.36, 0.32, 0.32],
        &[0.41, 0.2, 0.2, 0.19],
        &[0.55, 0.07, 0.07, 0.07, 0.06, 0.06, 0.06, 0.06],
    ];
    for (i, row) in rows.iter().enumerate() {
        for (j, &v) in row.iter().enumerate() {
            probs[[i, j]] = v;
        }
    }
    for i in 4..7 {
        probs[[i, 0]] = 0.99;
        probs[[i, 1]] = 0.01;
    }
    acts.layers[1].1 = probs;
    for (b, want) in [
        (Baseline::Margin, 10),
        (Baseline::LeastConfidence, 11),
        (Baseline::Uncertainty, 12),
        (Baseline::Entropy, 20),
    ] {
        let s = Step::new(&layout, &p, Arm::baseline(b), 1);
        store.put(&s.dir.diagnosis(), diagnosis_faulty(1)).unwrap();
        store.put(&s.dir.activations("pool"), acts.clone()).unwrap();
        let sel = select::run(&store, &s).unwrap();
        assert_eq!(sel.batch[0].id, want, "{b}");
    }
}

#[test]
fn coreset_takes_the_farthest_from_what_was_trained_on() {
    let (store, layout) = store();
    store.put(&layout.split(Split::Pool), pool()).unwrap();
    let p = pipeline(2, 0.5);
    let s = Step::new(&layout, &p, Arm::baseline(Baseline::Coreset), 1);
    store.put(&s.dir.diagnosis(), diagnosis_faulty(1)).unwrap();
    store.put(&s.dir.activations("pool"), pool_acts()).unwrap();
    // The train split sits at hidden [10, 0] and [5, 5]: the farthest pool sample is id 12 [0, 10].
    let mut train = pool_acts();
    train.ids = vec![100, 101];
    train.labels = vec![1, 0];
    train.predicted = vec![1, 0];
    train.layers = vec![
        ("dense_1".into(), arr2(&[[10.0f32, 0.0], [5.0, 5.0]])),
        (OUTPUT.into(), arr2(&[[0.1f32, 0.9], [0.9, 0.1]])),
    ];
    store.put(&s.dir.activations("train"), train).unwrap();
    let mut off = p.clone();
    off.layers.enabled = false;
    let rows = super::layers::select(&off, &pool_acts(), &pool_acts(), None)
        .unwrap()
        .rows;
    store.put(&s.dir.layers(), rows).unwrap();
    let sel = select::run(&store, &s).unwrap();
    // Target layer = output (layer selection off in the rows): distances in probabilities;
    // the farthest from {(0.1, 0.9), (0.9, 0.1)} is 0.5/0.5 (id 11).
    assert_eq!(sel.batch[0].id, 11);
}

#[test]
fn force_target_names_the_layer() {
    let mut p = pipeline(2, 0.5);
    p.layers.enabled = false;
    p.layers.force_target = Some("dense_1".into());
    let e = super::layers::select(&p, &pool_acts(), &pool_acts(), None)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("needs layer selection"), "{e}");
}

/// A tiny model (2 inputs, a hidden layer of 3, 2 classes) and its initial optimizer state.
fn tiny(store: &super::Store, layout: &crate::artifacts::Layout, p: &crate::config::Pipeline) {
    let train = samples(
        &[100, 101, 102, 103],
        &[0, 1, 0, 1],
        arr2(&[[0.0f32, 1.0], [1.0, 0.0], [0.1, 0.9], [0.9, 0.1]]),
        2,
    );
    let (net, _, state) = train::fit_initial(p, &train, None, |_, _| {}).unwrap();
    store.put(&layout.split(Split::Train), train).unwrap();
    store.put(&layout.split(Split::Pool), pool()).unwrap();
    store.put(&layout.initial().model(), net).unwrap();
    store.put(&layout.initial().optimizer(), state).unwrap();
}

#[test]
fn retrain_keeps_adam_and_takes_train_plus_selected() {
    let (store, layout) = store();
    let mut p = pipeline(2, 0.5);
    p.model.hidden = vec![3];
    p.retrain.epochs = 1;
    tiny(&store, &layout, &p);
    let arm = Arm::baseline(Baseline::Random);
    let batch = |s: &Step, ids: &[u32]| {
        let rows: Vec<BatchRow> = ids
            .iter()
            .map(|&id| BatchRow {
                id,
                label: if id < 20 { 1 } else { 0 },
                origin: Origin::Random,
                iteration: s.k,
                arm: s.arm_name(),
            })
            .collect();
        store.put(&s.dir.batch(), rows).unwrap();
    };
    // keep: the state is written beside the model, and differs from the initial one.
    let s1 = Step::new(&layout, &p, arm, 1);
    batch(&s1, &[10, 20]);
    assert_eq!(train::retrain(&store, &s1).unwrap().samples, 2);
    let st0 = store
        .get::<OptimState>(&layout.initial().optimizer())
        .unwrap();
    let st1 = store.get::<OptimState>(&s1.dir.optimizer()).unwrap();
    assert_ne!(st0.0, st1.0);
    // train + selected: iteration 2 trains on the 4 train samples and both batches.
    p.retrain.data = RetrainData::TrainSelected;
    let s2 = Step::new(&layout, &p, arm, 2);
    batch(&s2, &[11, 21]);
    assert_eq!(train::retrain(&store, &s2).unwrap().samples, 4 + 2 + 2);
    // fresh and scratch need no state and write none.
    p.retrain.optimizer = crate::config::OptimizerMode::Fresh;
    p.retrain.init = RetrainInit::Scratch;
    let s3 = Step::new(&layout, &p, arm, 3);
    batch(&s3, &[12]);
    train::retrain(&store, &s3).unwrap();
    assert!(!store.has(&s3.dir.optimizer()));
    assert_eq!(
        store
            .get::<Vec<TrainLogRow>>(&s3.dir.train_log())
            .unwrap()
            .len(),
        1
    );
}
