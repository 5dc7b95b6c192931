//! Training many models of one architecture as one burn autodiff program (the fleet).
//!
//! The models' parameters are stacked along a leading fleet axis (`[K, inputs, units]` for a
//! dense kernel, `[K, filters, channels·k²]` for a convolution), each model's batch is stacked
//! the same way, dense layers are batched matrix products, convolutions im2col from
//! differentiable slices and one batched product, and one Adam (Keras' form, see [`super::adam`])
//! updates every stacked parameter — so burn's per-operation cost is paid once per fleet
//! instead of once per model. The loss is the sum of the models' mean cross-entropies: model
//! k's gradient is its own.
//!
//! Models train together only when their schedules agree (as many samples, the same epochs,
//! batch size and learning rate): then every step has the same shapes. A model's result does
//! not depend on which models share its fleet — its data, shuffling and dropout come from its
//! own seed, and every operation computes model k's slice as it would alone (a test compares
//! the bytes of a model trained alone and inside a fleet). A fleet of one is how a single
//! model trains.

use super::adam::{self, AdamState, OptimState};
use super::arch::{Activation, Architecture, Layer};
use super::net::Net;
use super::ops;
use super::train::EpochStats;
use crate::config::{TrainConfig, derive_seed};
use anyhow::{Result, anyhow, bail};
use burn::nn::pool::AvgPool2dConfig;
use burn::tensor::{Device, Tensor, TensorData};
use ndarray::Array2;
use rand::{Rng, SeedableRng, seq::SliceRandom};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::time::Instant;

/// One model to train: where it starts, its samples, its schedule, its seed (shuffling, and
/// dropout from a stream derived from it) and Adam's state to continue from.
pub struct Job<'a> {
    pub net: Net,
    pub x: &'a Array2<f32>,
    pub y: &'a [u16],
    pub cfg: TrainConfig,
    pub seed: u64,
    pub state: Option<&'a OptimState>,
}

/// A trained model, its epochs' figures and Adam's state after it.
pub struct Trained {
    pub net: Net,
    pub epochs: Vec<EpochStats>,
    pub state: OptimState,
}

/// The CPU device: burn's Flex backend, with autodiff for training.
pub fn device(autodiff: bool) -> Device {
    let d = Device::flex();
    if autodiff { d.autodiff() } else { d }
}

/// Train every job; models whose schedules agree train as fleets, the fleets spread over the
/// threads of the current rayon pool. `on_step(done, total)` reports progress in steps of the
/// whole set. Results in the jobs' order.
pub fn fit_all(
    jobs: Vec<Job<'_>>,
    on_step: &(dyn Fn(usize, usize) + Sync),
) -> Vec<Result<Trained>> {
    let n = jobs.len();
    let mut slots: Vec<Option<Result<Trained>>> = (0..n).map(|_| None).collect();
    // Empty data: nothing to train (the model and Adam's state as they are).
    let mut groups: Vec<(String, Vec<(usize, Job)>)> = Vec::new();
    for (i, job) in jobs.into_iter().enumerate() {
        if job.x.nrows() == 0 {
            slots[i] = Some(untrained(job));
            continue;
        }
        let key = format!(
            "{}|{}|{}|{}|{}",
            job.net.arch.to_json(),
            job.x.nrows(),
            job.cfg.epochs,
            job.cfg.batch_size,
            job.cfg.learning_rate.to_bits()
        );
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, g)) => g.push((i, job)),
            None => groups.push((key, vec![(i, job)])),
        }
    }
    // Each group in as many fleets as there are threads (never more than models).
    let threads = rayon::current_num_threads().max(1);
    let mut fleets: Vec<Vec<(usize, Job)>> = Vec::new();
    for (_, g) in groups {
        let parts = threads.min(g.len());
        let size = g.len().div_ceil(parts);
        let mut it = g.into_iter().peekable();
        while it.peek().is_some() {
            fleets.push(it.by_ref().take(size).collect());
        }
    }
    let total: usize = fleets.iter().map(|f| steps_of(&f[0].1)).sum();
    let done = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<Vec<(usize, Result<Trained>)>> = fleets
        .into_par_iter()
        .map(|fleet| {
            let idx: Vec<usize> = fleet.iter().map(|(i, _)| *i).collect();
            let jobs: Vec<Job> = fleet.into_iter().map(|(_, j)| j).collect();
            let tick = || {
                let d = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                on_step(d, total);
            };
            let out = match train_fleet(jobs, &tick) {
                Ok(v) => v,
                Err(e) => {
                    let msg = format!("{e:#}");
                    idx.iter().map(|_| Err(anyhow!("{msg}"))).collect()
                }
            };
            idx.into_iter().zip(out).collect()
        })
        .collect();
    for (i, r) in results.into_iter().flatten() {
        slots[i] = Some(r);
    }
    slots
        .into_iter()
        .map(|s| s.expect("every job has a result"))
        .collect()
}

fn steps_of(job: &Job) -> usize {
    job.x.nrows().div_ceil(job.cfg.batch_size) * job.cfg.epochs
}

/// Nothing to train on: the model as it is, Adam's state as given (or fresh).
fn untrained(job: Job) -> Result<Trained> {
    let names = job.net.weights.param_names(&job.net.arch);
    let state = match job.state {
        Some(s) => {
            s.decode(&names)?;
            s.clone()
        }
        None => OptimState::encode(&names, &AdamState::fresh(&sizes(&names)))?,
    };
    Ok(Trained {
        net: job.net,
        epochs: Vec::new(),
        state,
    })
}

fn sizes(names: &[(String, Vec<usize>)]) -> Vec<usize> {
    names.iter().map(|(_, s)| s.iter().product()).collect()
}

/// A parameter's shape in the fleet, per model: `[rows, columns]` of its stacked matrix.
fn shape2(names: &[(String, Vec<usize>)], p: usize) -> [usize; 2] {
    let s = &names[p].1;
    match s.len() {
        1 if names[p].0.contains(".Conv.") => [s[0], 1],
        1 => [1, s[0]],
        2 => [s[0], s[1]],
        _ => [s[0], s[1..].iter().product()],
    }
}

/// The stacked parameters and Adam's stacked moments of a fleet, as plain arrays (model-major:
/// model m's part of parameter p at `m · len(p)`); the autodiff leaves of a step are made from
/// them and Adam updates them in place.
struct Stack {
    k: usize,
    shapes: Vec<[usize; 2]>,
    params: Vec<Vec<f32>>,
    m: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    /// Each model's step count.
    steps: Vec<u64>,
    /// This step's leaves (the parameters as autodiff tensors).
    leaves: Vec<Tensor<3>>,
}

impl Stack {
    fn new(jobs: &[Job], names: &[(String, Vec<usize>)], ad: &Device) -> Result<Stack> {
        let k = jobs.len();
        let shapes: Vec<[usize; 2]> = (0..names.len()).map(|p| shape2(names, p)).collect();
        let states: Vec<AdamState> = jobs
            .iter()
            .map(|j| match j.state {
                Some(s) => s.decode(names),
                None => Ok(AdamState::fresh(&sizes(names))),
            })
            .collect::<Result<_>>()?;
        let weights: Vec<Vec<&[f32]>> = jobs.iter().map(|j| j.net.weights.params()).collect();
        let stack = |parts: Vec<&[f32]>| parts.concat();
        let mut st = Stack {
            k,
            params: (0..names.len())
                .map(|p| stack(weights.iter().map(|w| w[p]).collect()))
                .collect(),
            m: (0..names.len())
                .map(|p| stack(states.iter().map(|s| &s.moments[p].0[..]).collect()))
                .collect(),
            v: (0..names.len())
                .map(|p| stack(states.iter().map(|s| &s.moments[p].1[..]).collect()))
                .collect(),
            shapes,
            steps: states.iter().map(|s| s.step).collect(),
            leaves: Vec::new(),
        };
        st.make_leaves(ad);
        Ok(st)
    }

    /// The parameters as this step's autodiff leaves.
    fn make_leaves(&mut self, ad: &Device) {
        self.leaves = self
            .params
            .iter()
            .zip(&self.shapes)
            .map(|(v, sh)| {
                Tensor::<3>::from_data(TensorData::new(v.clone(), [self.k, sh[0], sh[1]]), ad)
                    .require_grad()
            })
            .collect();
    }

    /// One Adam step of every model from the gradients of the summed loss, in place (Keras'
    /// form, see [`adam`]); then the next step's leaves.
    fn step(&mut self, mut grads: burn::tensor::Gradients, lr: f32, ad: &Device) -> Result<()> {
        for s in &mut self.steps {
            *s += 1;
        }
        let alphas: Vec<f32> = self.steps.iter().map(|&t| adam::alpha(lr, t)).collect();
        for p in 0..self.leaves.len() {
            let g = self.leaves[p]
                .grad_remove(&mut grads)
                .ok_or_else(|| anyhow!("no gradient for parameter {p} (internal error)"))?;
            let g = g
                .try_into_primitive::<burn::backend::Flex>()
                .map_err(|_| anyhow!("a gradient off the Flex device (internal error)"))?;
            let g = g.storage::<f32>();
            let per = self.shapes[p][0] * self.shapes[p][1];
            let (th, m, v) = (&mut self.params[p], &mut self.m[p], &mut self.v[p]);
            for (model, &alpha) in alphas.iter().enumerate() {
                let r = model * per..(model + 1) * per;
                adam::update(
                    &mut th[r.clone()],
                    &mut m[r.clone()],
                    &mut v[r.clone()],
                    &g[r],
                    alpha,
                );
            }
        }
        self.make_leaves(ad);
        Ok(())
    }

    /// Model m's slice of every stacked array in `t`.
    fn slices(&self, t: &[Vec<f32>]) -> Vec<Vec<Vec<f32>>> {
        let mut out: Vec<Vec<Vec<f32>>> = vec![Vec::with_capacity(t.len()); self.k];
        for (p, x) in t.iter().enumerate() {
            let n = self.shapes[p][0] * self.shapes[p][1];
            for (m, chunk) in x.chunks_exact(n).enumerate() {
                out[m].push(chunk.to_vec());
            }
        }
        out
    }
}

/// A layer's output on the way through the fleet: images `[K·B, C, H, W]` or vectors
/// `[K, B, width]`.
enum LayerOut {
    Img(Tensor<4>),
    Vec(Tensor<3>),
}

impl LayerOut {
    fn flat(self, k: usize) -> Tensor<3> {
        match self {
            LayerOut::Img(t) => {
                let [kb, c, h, w] = t.dims();
                t.reshape([k, kb / k, c * h * w])
            }
            LayerOut::Vec(t) => t,
        }
    }
}

/// The fleet's forward pass to the logits `[K, B, classes]`; `drop` draws each model's
/// dropout masks from its own stream.
fn forward(
    arch: &Architecture,
    s: &Stack,
    x: Tensor<3>,
    drop: &mut [ChaCha8Rng],
) -> Result<Tensor<3>> {
    let k = s.k;
    let [_, b, _] = x.dims();
    let mut act = if arch.is_convolutional() {
        LayerOut::Img(x.reshape([k * b, arch.channels, arch.height, arch.width]))
    } else {
        LayerOut::Vec(x)
    };
    let mut p = 0usize;
    let mut weights = || {
        p += 2;
        (s.leaves[p - 2].clone(), s.leaves[p - 1].clone())
    };
    for l in &arch.layers {
        act = match (l, act) {
            (
                Layer::Conv2d {
                    kernel,
                    stride,
                    padding,
                    activation,
                    ..
                },
                LayerOut::Img(t),
            ) => {
                let (w, b) = weights();
                LayerOut::Img(ops::conv(
                    t,
                    w,
                    b,
                    k,
                    (*kernel, *stride, *padding),
                    *activation,
                ))
            }
            (Layer::MaxPool2d { size, stride }, LayerOut::Img(t)) => {
                LayerOut::Img(ops::max_pool(t, *size, stride.unwrap_or(*size)))
            }
            (Layer::AvgPool2d { size, stride }, LayerOut::Img(t)) => LayerOut::Img(
                AvgPool2dConfig::new([*size, *size])
                    .with_strides([stride.unwrap_or(*size); 2])
                    .init()
                    .forward(t),
            ),
            (Layer::Dense { activation, .. }, a) => {
                let (w, b) = weights();
                LayerOut::Vec(ops::dense(a.flat(k), w, b, *activation))
            }
            (Layer::Flatten, a) => LayerOut::Vec(a.flat(k)),
            (Layer::Dropout { rate }, a) if *rate > 0.0 && !drop.is_empty() => {
                dropped(a, *rate, drop)
            }
            (_, a) => a,
        };
    }
    let (w, b) = weights();
    Ok(ops::dense(act.flat(k), w, b, Activation::Linear))
}

/// Inverted dropout; model m's mask comes from `drop[m]`, in the order a model alone draws it.
fn dropped(a: LayerOut, rate: f64, drop: &mut [ChaCha8Rng]) -> LayerOut {
    let keep = 1.0 / (1.0 - rate) as f32;
    let mut mask = |dims: &[usize]| -> Vec<f32> {
        let per: usize = dims.iter().product::<usize>() / drop.len();
        let mut v = Vec::with_capacity(per * drop.len());
        for rng in drop.iter_mut() {
            v.extend((0..per).map(|_| {
                if rng.random::<f64>() < rate {
                    0.0
                } else {
                    keep
                }
            }));
        }
        v
    };
    match a {
        LayerOut::Img(t) => {
            let d = t.dims();
            let m = Tensor::<4>::from_data(TensorData::new(mask(&d), d), &t.device());
            LayerOut::Img(t * m)
        }
        LayerOut::Vec(t) => {
            let d = t.dims();
            let m = Tensor::<3>::from_data(TensorData::new(mask(&d), d), &t.device());
            LayerOut::Vec(t * m)
        }
    }
}

/// Train one fleet (every job with the same architecture and schedule).
fn train_fleet(jobs: Vec<Job>, tick: &dyn Fn()) -> Result<Vec<Result<Trained>>> {
    let ad = device(true);
    let arch = jobs[0].net.arch.clone();
    let names = jobs[0].net.weights.param_names(&arch);
    let (k, n, d) = (jobs.len(), jobs[0].x.nrows(), jobs[0].x.ncols());
    let cfg = jobs[0].cfg.clone();
    let mut stack = Stack::new(&jobs, &names, &ad)?;
    let mut order_rng: Vec<ChaCha8Rng> = jobs
        .iter()
        .map(|j| ChaCha8Rng::seed_from_u64(j.seed))
        .collect();
    let mut drop_rng: Vec<ChaCha8Rng> = jobs
        .iter()
        .map(|j| ChaCha8Rng::seed_from_u64(derive_seed(j.seed, "dropout")))
        .collect();
    let mut orders: Vec<Vec<usize>> = vec![(0..n).collect(); k];
    let mut failed: Vec<Option<String>> = vec![None; k];
    let mut stats: Vec<Vec<EpochStats>> = vec![Vec::new(); k];
    let lr = cfg.learning_rate as f32;
    for epoch in 1..=cfg.epochs {
        let t0 = Instant::now();
        for (o, r) in orders.iter_mut().zip(order_rng.iter_mut()) {
            o.shuffle(r);
        }
        let mut loss_sum = vec![0.0f64; k];
        let mut correct = vec![0usize; k];
        let batches: Vec<std::ops::Range<usize>> = (0..n)
            .step_by(cfg.batch_size)
            .map(|start| start..start + cfg.batch_size.min(n - start))
            .collect();
        // The batches' rows are copied out a group at a time, as a task an idle worker can
        // take while the group before it trains (random rows of the split: memory-bound, ≈ a
        // sixth of an MLP step; one task per group instead of per step spares the worker a
        // wake-up and a join every step). When every worker trains a fleet of its own, this
        // thread copies them when the group is done. Either way the same rows.
        let per_batch = k * cfg.batch_size * d * std::mem::size_of::<f32>();
        let group = (GATHER_BYTES / per_batch.max(1)).clamp(1, 64);
        let groups: Vec<&[std::ops::Range<usize>]> = batches.chunks(group).collect();
        let mut next = groups.first().map(|g| gather_group(&jobs, &orders, g));
        for (gi, grp) in groups.iter().enumerate() {
            let current = next.take().expect("each group gathered before its steps");
            let (jobs_ref, orders_ref) = (&jobs, &orders);
            let following = groups.get(gi + 1).copied();
            let mut fetched = None;
            let slot = &mut fetched;
            let stepped: Result<()> = rayon::in_place_scope(|sc| {
                if let Some(g) = following {
                    sc.spawn(move |_| *slot = Some(gather_group(jobs_ref, orders_ref, g)));
                }
                for (j, ((xb, yb), at)) in current.into_iter().zip(grp.iter()).enumerate() {
                    let (b, len) = (gi * group + j, at.len());
                    let input = Tensor::<3>::from_data(TensorData::new(xb, [k, len, d]), &ad);
                    let logits = forward(&arch, &stack, input, &mut drop_rng)?;
                    let pred: Vec<i64> = logits
                        .clone()
                        .detach()
                        .argmax(2)
                        .try_into_vec_as::<i64>()
                        .map_err(|e| anyhow!("{e:?}"))?;
                    let targets: Vec<u32> = yb.iter().map(|&t| t as u32).collect();
                    let losses = ops::cross_entropy(logits, &targets); // [K]
                    let means: Vec<f32> = losses
                        .clone()
                        .detach()
                        .try_into_vec_as::<f32>()
                        .map_err(|e| anyhow!("{e:?}"))?;
                    for m in 0..k {
                        let lv = means[m];
                        if !lv.is_finite() && failed[m].is_none() {
                            failed[m] = Some(format!(
                                "training diverged: the loss became {lv} in epoch {epoch}, batch {} (check the data for non-finite or unscaled values, or lower the learning rate)",
                                b + 1
                            ));
                        }
                        loss_sum[m] += lv as f64 * len as f64;
                        correct[m] += (0..len)
                            .filter(|&i| pred[m * len + i] == yb[m * len + i])
                            .count();
                    }
                    let grads = losses.sum().backward();
                    stack.step(grads, lr, &ad)?;
                    tick();
                }
                Ok(())
            });
            stepped?;
            // The scope has waited for the copy: the next group is there unless this was the
            // epoch's last.
            next = fetched;
        }
        let secs = t0.elapsed().as_secs_f64();
        for m in 0..k {
            stats[m].push(EpochStats {
                epoch,
                loss: loss_sum[m] / n as f64,
                accuracy: correct[m] as f64 / n as f64,
                seconds: secs,
            });
        }
    }
    unstack(jobs, &stack, &names, failed, stats)
}

/// How many bytes of batches one gathering task copies ahead (at least one batch).
const GATHER_BYTES: usize = 4 << 20;

/// [`gather`] of each batch of a group, in order.
fn gather_group(
    jobs: &[Job],
    orders: &[Vec<usize>],
    group: &[std::ops::Range<usize>],
) -> Vec<(Vec<f32>, Vec<i64>)> {
    group
        .iter()
        .map(|r| gather(jobs, orders, r.clone()))
        .collect()
}

/// Every model's samples at positions `at` of its epoch's order, model after model: the
/// inputs `[K·len·d]` and the labels `[K·len]`.
fn gather(jobs: &[Job], orders: &[Vec<usize>], at: std::ops::Range<usize>) -> (Vec<f32>, Vec<i64>) {
    let (k, len, d) = (jobs.len(), at.len(), jobs[0].x.ncols());
    let mut xb = Vec::with_capacity(k * len * d);
    let mut yb = Vec::with_capacity(k * len);
    for (j, o) in jobs.iter().zip(orders) {
        for &i in &o[at.clone()] {
            crate::numeric::extend_values(&mut xb, &j.x.row(i));
            yb.push(j.y[i] as i64);
        }
    }
    (xb, yb)
}

/// Each model of the trained fleet as its own: its weights and Adam's state out of the stack,
/// its epochs; a model whose training failed as its error.
fn unstack(
    jobs: Vec<Job>,
    stack: &Stack,
    names: &[(String, Vec<usize>)],
    mut failed: Vec<Option<String>>,
    mut stats: Vec<Vec<EpochStats>>,
) -> Result<Vec<Result<Trained>>> {
    let k = jobs.len();
    let params = stack.slices(&stack.params);
    let m1 = stack.slices(&stack.m);
    let m2 = stack.slices(&stack.v);
    let mut out = Vec::with_capacity(k);
    for (m, job) in jobs.into_iter().enumerate() {
        if let Some(e) = failed[m].take() {
            out.push(Err(anyhow!("{e}")));
            continue;
        }
        let mut net = job.net;
        for (dst, src) in net.weights.params_mut().into_iter().zip(&params[m]) {
            dst.copy_from_slice(src);
        }
        let state = AdamState {
            step: stack.steps[m],
            moments: m1[m].iter().cloned().zip(m2[m].iter().cloned()).collect(),
        };
        out.push(Ok(Trained {
            net,
            epochs: std::mem::take(&mut stats[m]),
            state: OptimState::encode(names, &state)?,
        }));
    }
    if out.len() != k {
        bail!("a fleet lost a model (internal error)");
    }
    Ok(out)
}

/// The class probabilities of `net` on `x` by the fleet's own forward pass (burn, no
/// dropout): the reference the inference kernel is tested against.
#[cfg(test)]
pub(super) fn burn_probs(net: &Net, x: &Array2<f32>) -> Array2<f32> {
    let ad = device(true);
    let y = vec![0u16; x.nrows()];
    let job = Job {
        net: net.clone(),
        x,
        y: &y,
        cfg: TrainConfig::default(),
        seed: 0,
        state: None,
    };
    let names = net.weights.param_names(&net.arch);
    let stack = Stack::new(std::slice::from_ref(&job), &names, &ad).unwrap();
    let (n, d) = x.dim();
    let input = Tensor::<3>::from_data(
        TensorData::new(x.iter().copied().collect::<Vec<f32>>(), [1, n, d]),
        &ad,
    );
    let logits = forward(&net.arch, &stack, input, &mut []).unwrap();
    let p = burn::tensor::activation::softmax(logits, 2);
    let c = net.arch.classes;
    Array2::from_shape_vec((n, c), p.try_into_vec_as::<f32>().unwrap()).unwrap()
}
