//! Time the input feature model: `fit_head` on the pixels of a train split, on the seeded
//! subset the engine fits on (`layers.max_train_samples`), as `mode` does it.
//!
//! ```text
//! cargo run --release --example input_head -- pipelines/mnist.toml ROOT/splits/train.parquet [REPEAT]
//! ```
//!
//! Reads the split and fits the head REPEAT times (default 1; 0 = read only, to subtract the
//! start-up when timing the whole process); prints each fit's wall time and a checksum of the
//! last head's bytes (same input, same bytes).

use mode::analysis::layers::fit_head;
use mode::artifacts::{Artifact, Samples};
use mode::config::{Pipeline, derive_seed};
use ndarray::Axis;
use rand::{SeedableRng, seq::index::sample};
use rand_chacha::ChaCha8Rng;
use std::path::Path;
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(
        args.len() >= 3,
        "usage: input_head PIPELINE.toml TRAIN.parquet [REPEAT]"
    );
    let p = Pipeline::load(Some(Path::new(&args[1])), &[])?;
    let train = Samples::read(Path::new(&args[2]))?;
    let repeat: usize = args.get(3).map_or(Ok(1), |s| s.parse())?;
    // The engine's subset (src/engine/layers.rs, `fit_rows`).
    let (x, y) = match p.layers.max_train_samples {
        m if m > 0 && train.len() > m => {
            let seed = derive_seed(p.seed, "feature-model-rows");
            let mut idx = sample(&mut ChaCha8Rng::seed_from_u64(seed), train.len(), m).into_vec();
            idx.sort_unstable();
            let ys: Vec<u16> = idx.iter().map(|&i| train.labels[i]).collect();
            (train.pixels.select(Axis(0), &idx), ys)
        }
        _ => (train.pixels.clone(), train.labels.clone()),
    };
    let mut times = Vec::new();
    let mut sum = 0u64;
    for _ in 0..repeat {
        let t = Instant::now();
        let head = fit_head(x.view(), &y, train.meta.classes, &p.layers)?;
        times.push(t.elapsed().as_secs_f64());
        sum = head
            .weights
            .iter()
            .chain(&head.intercept)
            .fold(0u64, |h, v| h.rotate_left(5) ^ u64::from(v.to_bits()));
    }
    times.sort_by(f64::total_cmp);
    if let Some(median) = times.get(times.len() / 2) {
        println!(
            "{} x {} -> {}: {repeat} fits, median {median:.4} s (min {:.4}, max {:.4}), checksum {sum:016x}",
            x.nrows(),
            x.ncols(),
            train.meta.classes,
            times[0],
            times[times.len() - 1]
        );
    }
    Ok(())
}
