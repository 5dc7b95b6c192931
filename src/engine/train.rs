//! The retrain and evaluate steps, and the initial training they continue from.

use super::{Step, Store};
use crate::artifacts::{
    BatchRow, DiagnosisRow, MetricRow, Predictions, Samples, Split, TrainLogRow,
};
use crate::config::{OptimizerMode, Pipeline, RetrainData, RetrainInit, derive_seed};
use crate::model::{self, Classifier, EpochStats, Net, OptimState};
use crate::numeric::argmax;
use crate::vocab::{IterStatus, Scope};
use anyhow::{Result, bail};
use std::path::Path;

/// The arm name of the initial model's metrics (iteration 0).
pub const INITIAL: &str = "initial";

/// The rows of `train_log.parquet` for these epochs.
pub fn log_rows(epochs: &[EpochStats]) -> Vec<TrainLogRow> {
    epochs
        .iter()
        .map(|e| TrainLogRow {
            epoch: e.epoch as u32,
            loss: e.loss,
            accuracy: e.accuracy,
            seconds: e.seconds,
        })
        .collect()
}

/// The shuffling seed of one arm's retraining at one iteration.
pub fn shuffle_seed(p: &Pipeline, arm: &str, iteration: u32) -> u64 {
    derive_seed(p.seed, &format!("retrain/{arm}/{iteration}"))
}

/// The initial model: fresh weights (the pipeline's architecture and weight seed), or `init`
/// continued, trained on `samples` with the `[train]` section (shuffled from the pipeline's
/// "train" or "continue" stream), and Adam's state after it.
pub fn fit_initial(
    p: &Pipeline,
    samples: &Samples,
    init: Option<Net>,
    on_step: impl Fn(usize, usize) + Sync,
) -> Result<(Net, Vec<EpochStats>, OptimState)> {
    let (net, stream) = match init {
        Some(net) => (net.with_settings(""), "continue"),
        None => (Net::init(p, &samples.meta)?, "train"),
    };
    model::fit(
        model::Job {
            net,
            x: &samples.pixels,
            y: &samples.labels,
            cfg: p.train.clone(),
            seed: derive_seed(p.seed, stream),
            state: None,
        },
        on_step,
    )
}

/// What a retrain did.
pub struct Retrained {
    pub samples: usize,
}

/// The samples of a retraining: the step's batch, or (`retrain.data = "train+selected"`) the
/// train split and every batch selected so far.
fn retrain_data(store: &Store, s: &Step, batch: &[BatchRow]) -> Result<Samples> {
    let pool = store.get::<Samples>(&s.layout.split(Split::Pool))?;
    let what = s.dir.batch().display().to_string();
    match s.p.retrain.data {
        RetrainData::Batch => {
            let ids: Vec<u32> = batch.iter().map(|b| b.id).collect();
            pool.take_ids(&ids, &what)
        }
        RetrainData::TrainSelected => {
            let mut ids: Vec<u32> = Vec::new();
            for k in 1..s.k {
                let d = s.layout.iter(&s.arm_name(), k);
                ids.extend(store.get::<Vec<BatchRow>>(&d.batch())?.iter().map(|b| b.id));
            }
            ids.extend(batch.iter().map(|b| b.id));
            let selected = pool.take_ids(&ids, &what)?;
            let train = store.get::<Samples>(&s.layout.split(Split::Train))?;
            Samples::concat(&[&train, &selected])
        }
    }
}

/// Train on what the step selected (`[retrain]`: the batch or train + every batch so far,
/// continuing from the previous model or from scratch, keeping Adam's state or not); write the
/// model, `train_log.parquet` and Adam's state. An empty batch keeps the model as it is.
pub fn retrain(store: &Store, s: &Step) -> Result<Retrained> {
    retrain_fleet(store, &[s]).pop().expect("one result")
}

/// What a step trains, read from the store: the start, the samples and Adam's state (none
/// for an empty batch, which keeps the model as it is).
struct Plan {
    start: Net,
    samples: Option<Samples>,
    state: Option<std::sync::Arc<OptimState>>,
}

fn plan(store: &Store, s: &Step) -> Result<Plan> {
    let prev = s.prev.model();
    let net = store.get::<Net>(&prev)?;
    net.check_pipeline(&s.p, &prev)?;
    let batch = store.get::<Vec<BatchRow>>(&s.dir.batch())?;
    let r = &s.p.retrain;
    let keep = r.optimizer == OptimizerMode::Keep;
    if batch.is_empty() {
        let state = if keep && store.has(&s.prev.optimizer()) {
            Some(store.get::<OptimState>(&s.prev.optimizer())?)
        } else {
            None
        };
        return Ok(Plan {
            start: (*net).clone(),
            samples: None,
            state,
        });
    }
    let samples = retrain_data(store, s, &batch)?;
    let (start, state) = match r.init {
        RetrainInit::Scratch => (Net::init(&s.p, &samples.meta)?, None),
        RetrainInit::Continue if keep => {
            let path = s.prev.optimizer();
            if !store.has(&path) {
                bail!(
                    "{}: no optimizer state beside the model, so Adam cannot continue (retrain.optimizer = \"keep\"); train the initial model again (mode train writes it) or set retrain.optimizer = \"fresh\"",
                    path.display()
                );
            }
            ((*net).clone(), Some(store.get::<OptimState>(&path)?))
        }
        RetrainInit::Continue => ((*net).clone(), None),
    };
    Ok(Plan {
        start,
        samples: Some(samples),
        state,
    })
}

/// [`retrain`] for many steps at once: their trainings run as fleets (models whose schedules
/// agree train together). Results in the steps' order.
pub fn retrain_fleet(store: &Store, steps: &[&Step]) -> Vec<Result<Retrained>> {
    let plans: Vec<Result<Plan>> = steps.iter().map(|s| plan(store, s)).collect();
    let mut jobs = Vec::new();
    let mut which = Vec::new();
    for (i, p) in plans.iter().enumerate() {
        if let Ok(Plan {
            start,
            samples: Some(samples),
            state,
        }) = p
        {
            let s = steps[i];
            jobs.push(model::Job {
                net: start.clone(),
                x: &samples.pixels,
                y: &samples.labels,
                cfg: s.p.retrain.train(),
                seed: shuffle_seed(&s.p, &s.arm_name(), s.k),
                state: state.as_deref(),
            });
            which.push(i);
        }
    }
    let mut trained: Vec<Option<Result<model::Trained>>> = (0..steps.len()).map(|_| None).collect();
    for (i, t) in which.into_iter().zip(model::fit_all(jobs, &|_, _| {})) {
        trained[i] = Some(t);
    }
    steps
        .iter()
        .zip(plans)
        .zip(trained)
        .map(|((s, p), t)| write_retrained(store, s, p?, t))
        .collect()
}

/// Write what a retrain made: the log first (the model is the file make watches), Adam's
/// state when it is kept, the model.
fn write_retrained(
    store: &Store,
    s: &Step,
    plan: Plan,
    trained: Option<Result<model::Trained>>,
) -> Result<Retrained> {
    let keep = s.p.retrain.optimizer == OptimizerMode::Keep;
    let Some(t) = trained else {
        // An empty batch: the model as it is.
        store.put(&s.dir.train_log(), Vec::<TrainLogRow>::new())?;
        if let Some(st) = plan.state {
            store.put_arc(&s.dir.optimizer(), st)?;
        }
        store.put(&s.dir.model(), plan.start)?;
        return Ok(Retrained { samples: 0 });
    };
    let t = t?;
    store.put(&s.dir.train_log(), log_rows(&t.epochs))?;
    if keep {
        store.put(&s.dir.optimizer(), t.state)?;
    }
    store.put(&s.dir.model(), t.net.with_settings(&s.p.fingerprint()))?;
    Ok(Retrained {
        samples: plan.samples.map_or(0, |x| x.len()),
    })
}

/// Who is being evaluated: the arm and iteration recorded in the metrics, and how the
/// iteration went.
#[derive(Debug, Clone)]
pub struct EvalTag {
    pub arm: String,
    pub iteration: u32,
    pub status: IterStatus,
}

/// Overall and per-label accuracy and mean cross-entropy. Pure.
pub fn metric_rows(
    p: &Pipeline,
    tag: &EvalTag,
    labels: &[u16],
    probs: &ndarray::Array2<f32>,
    classes: usize,
) -> Vec<MetricRow> {
    let losses = model::cross_entropy(probs, labels);
    let predicted: Vec<usize> = probs
        .rows()
        .into_iter()
        .map(|r| argmax(r.iter().copied()))
        .collect();
    let row = |scope: Scope, label: Option<u16>, idx: &mut dyn Iterator<Item = usize>| {
        let (mut n, mut correct, mut loss) = (0u32, 0u32, 0.0f64);
        for i in idx {
            n += 1;
            correct += (predicted[i] == labels[i] as usize) as u32;
            loss += losses[i];
        }
        let d = n.max(1) as f64;
        MetricRow {
            pipeline: p.name.clone(),
            seed: p.seed as i64,
            arm: tag.arm.clone(),
            iteration: tag.iteration,
            scope,
            label,
            accuracy: correct as f64 / d,
            loss: loss / d,
            n,
            finished_early: tag.status == IterStatus::FinishedEarly,
            status: tag.status,
        }
    };
    let mut rows = vec![row(Scope::Overall, None, &mut (0..labels.len()))];
    for c in 0..classes as u16 {
        rows.push(row(
            Scope::Label,
            Some(c),
            &mut (0..labels.len()).filter(|&i| labels[i] == c),
        ));
    }
    rows
}

/// Evaluate the model at `model` on the split `data`; write `predictions.parquet` and
/// `metrics.parquet` into `out`. Returns the metric rows.
pub fn evaluate_model(
    store: &Store,
    p: &Pipeline,
    model: &Path,
    data: &Path,
    out: &crate::artifacts::IterDir,
    tag: &EvalTag,
) -> Result<Vec<MetricRow>> {
    let net = store.get::<Net>(model)?;
    net.check_pipeline(p, model)?;
    let samples = store.get::<Samples>(data)?;
    evaluate_with(store, p, &*net, (&samples, data), out, tag)
}

/// Evaluate any classifier on `samples` (read from the path given with them); write
/// `predictions.parquet` and `metrics.parquet` into `out`.
pub fn evaluate_with(
    store: &Store,
    p: &Pipeline,
    net: &(impl Classifier + ?Sized),
    (samples, data): (&Samples, &Path),
    out: &crate::artifacts::IterDir,
    tag: &EvalTag,
) -> Result<Vec<MetricRow>> {
    net.check_data(&samples.meta, data)?;
    let probs = net.predict(&samples.pixels)?;
    write_evaluation(store, p, samples, probs, out, tag)
}

/// The metrics and predictions of class probabilities on `samples` (one row each), written
/// into `out`.
pub fn write_evaluation(
    store: &Store,
    p: &Pipeline,
    samples: &Samples,
    probs: ndarray::Array2<f32>,
    out: &crate::artifacts::IterDir,
    tag: &EvalTag,
) -> Result<Vec<MetricRow>> {
    let rows = metric_rows(p, tag, &samples.labels, &probs, probs.ncols());
    store.put(
        &out.predictions(),
        Predictions {
            ids: samples.ids.clone(),
            labels: samples.labels.clone(),
            probs,
        },
    )?;
    store.put(&out.metrics(), rows.clone())?;
    Ok(rows)
}

/// How an iteration went, from its batch and diagnosis: no faulty label → finished early;
/// a batch smaller than asked for → the pool ran out.
pub fn iteration_status(store: &Store, s: &Step) -> Result<IterStatus> {
    let batch = store.get::<Vec<BatchRow>>(&s.dir.batch())?;
    if s.arm.strategy.needs_diagnosis() {
        let d = store.get::<Vec<DiagnosisRow>>(&s.dir.diagnosis())?;
        if !d.iter().any(|r| r.faultiest) {
            return Ok(IterStatus::FinishedEarly);
        }
    }
    let pool = store.get::<Samples>(&s.layout.split(Split::Pool))?;
    Ok(if batch.len() < s.p.mode.batch.of(pool.len()) {
        IterStatus::PoolExhausted
    } else {
        IterStatus::Ran
    })
}

/// Evaluate the step's new model on the test split.
pub fn evaluate(store: &Store, s: &Step) -> Result<Vec<MetricRow>> {
    evaluate_fleet(store, &[s]).pop().expect("one result")
}

/// [`evaluate`] for many steps at once: their models of one architecture are run on the test
/// split together. Results in the steps' order.
pub fn evaluate_fleet(store: &Store, steps: &[&Step]) -> Vec<Result<Vec<MetricRow>>> {
    if steps.is_empty() {
        return Vec::new();
    }
    let prepared: Vec<Result<(std::sync::Arc<Net>, EvalTag)>> = steps
        .iter()
        .map(|s| {
            let model = s.dir.model();
            let net = store.get::<Net>(&model)?;
            net.check_pipeline(&s.p, &model)?;
            // As the probe records the layers: the outputs are kept for the next probe.
            let net = std::sync::Arc::new((*net).clone().with_probe(&s.p));
            let tag = EvalTag {
                arm: s.arm_name(),
                iteration: s.k,
                status: iteration_status(store, s)?,
            };
            Ok((net, tag))
        })
        .collect();
    let data = steps[0].layout.split(Split::Test);
    let samples = match store.get::<Samples>(&data) {
        Ok(x) => x,
        Err(e) => {
            let msg = format!("{e:#}");
            return steps
                .iter()
                .map(|_| Err(anyhow::anyhow!("{msg}")))
                .collect();
        }
    };
    let mut probs: Vec<Option<Result<ndarray::Array2<f32>>>> =
        (0..steps.len()).map(|_| None).collect();
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (i, p) in prepared.iter().enumerate() {
        if let Ok((net, _)) = p {
            if let Err(e) = net.check_data(&samples.meta, &data) {
                probs[i] = Some(Err(e));
                continue;
            }
            match groups.iter_mut().find(|g| match &prepared[g[0]] {
                Ok((n, _)) => n.arch == net.arch && n.conv_probe == net.conv_probe,
                Err(_) => false,
            }) {
                Some(g) => g.push(i),
                None => groups.push(vec![i]),
            }
        }
    }
    for g in groups {
        let nets: Vec<&Net> = g
            .iter()
            .map(|&i| &*prepared[i].as_ref().expect("prepared").0)
            .collect();
        match model::activations_fleet(&nets, &samples.pixels) {
            Ok(outs) => {
                for (&i, o) in g.iter().zip(outs) {
                    probs[i] = Some(Ok(o.last().expect("the output layer").clone()));
                    super::probe::keep_outputs(store, steps[i], Split::Test, o);
                }
            }
            Err(e) => {
                let msg = format!("{e:#}");
                for &i in &g {
                    probs[i] = Some(Err(anyhow::anyhow!("{msg}")));
                }
            }
        }
    }
    use rayon::prelude::*;
    steps
        .par_iter()
        .zip(prepared.into_par_iter())
        .zip(probs.into_par_iter())
        .map(|((s, p), probs)| {
            let (_, tag) = p?;
            let probs = probs.expect("probabilities or an error")?;
            write_evaluation(store, &s.p, &samples, probs, &s.dir, &tag)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_label_accuracy() {
        let probs = ndarray::arr2(&[[0.9f32, 0.1], [0.2, 0.8], [0.6, 0.4]]);
        let tag = EvalTag {
            arm: "a".into(),
            iteration: 0,
            status: IterStatus::Ran,
        };
        let rows = metric_rows(&Pipeline::default(), &tag, &[0, 1, 1], &probs, 2);
        assert_eq!(rows.len(), 3);
        assert!((rows[0].accuracy - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(
            (rows[1].label, rows[1].accuracy, rows[1].n),
            (Some(0), 1.0, 1)
        );
        assert_eq!(
            (rows[2].label, rows[2].accuracy, rows[2].n),
            (Some(1), 0.5, 2)
        );
    }
}
