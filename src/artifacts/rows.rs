//! The table artifacts' row types: one struct per file kind, one field per column.

use crate::table;
use crate::vocab::{Action, Decider, Direction, IterStatus, Origin, RunStatus, Scope};

table!(
    /// `train_log.parquet`: one row per epoch.
    TrainLogRow { epoch: u32, loss: f64, accuracy: f64, seconds: f64 }
);

table!(
    /// `metrics.parquet`, long format: one `overall` row and one row per label.
    MetricRow {
        pipeline: String,
        seed: i64,
        arm: String,
        iteration: u32,
        scope: Scope,
        /// null for the overall row
        label: Option<u16>,
        accuracy: f64,
        loss: f64,
        n: u32,
        /// no label was faulty at this iteration's diagnosis
        finished_early: bool,
        /// ran | finished_early | pool_exhausted (iteration 0: ran)
        status: IterStatus,
    }
);

table!(
    /// `layers.parquet`: one row per probed layer and direction.
    LayerRow {
        layer: String,
        position: u32,
        width: u32,
        probe_accuracy: f64,
        /// null when layer selection is off
        bhattacharyya: Option<f64>,
        is_target: bool,
        direction: Direction,
        /// the feature model's L2 strength (null for the output layer: the model itself)
        l2: Option<f64>,
        /// the feature model is not clearly above chance (see the README's checks)
        near_chance: bool,
        /// a target whose feature model is more than `layers.max_gap` below the model's own
        /// accuracy
        below_model: bool,
    }
);

table!(
    /// `diagnosis.parquet`: one row per label.
    DiagnosisRow {
        label: u16,
        /// the deciding layer's accuracy on this label (train and analysis split)
        train_acc: f64,
        test_acc: f64,
        gap: f64,
        underfit: bool,
        overfit: bool,
        faultiest: bool,
        action: Action,
        n_train: u32,
        n_test: u32,
        /// the model's own accuracy on this label (analysis split)
        model_acc: f64,
        /// the target layer's feature model's accuracy on this label (analysis split; the
        /// model's own when the target is the output layer)
        target_acc: f64,
        /// the θ this diagnosis used (a relative θ times the model's accuracy)
        theta: f64,
        /// the layer whose predictions decided, and whose they were
        layer: String,
        decided_by: Decider,
        /// θ is above every label's accuracy: every label underfits
        theta_above_all: bool,
        /// this label has fewer pool samples than the targeted share (α · batch)
        few_candidates: bool,
        /// the batch is larger than the pool left
        batch_exceeds_pool: bool,
    }
);

table!(
    /// `scores.parquet`: every scored pool sample of the faultiest label (or of the pool, for
    /// the uncertainty baselines).
    ScoreRow { id: u32, label: u16, metric: String, score: f64, rank: u32 }
);

table!(
    /// `batch.parquet`: the samples chosen for retraining.
    BatchRow { id: u32, label: u16, origin: Origin, iteration: u32, arm: String }
);

table!(
    /// `pool.parquet` (select's output): the pool ids left.
    PoolRow { id: u32, label: u16 }
);

table!(
    /// `splits/sources.parquet`: where each sample of an image folder or a table came from
    /// (the image file, or `<table file>#<row>`).
    SourceRow { id: u32, split: String, source: String }
);

table!(
    /// `summary.parquet`: one row per arm (Tables 1 and 2 of the seed).
    SummaryRow {
        arm: String,
        /// selection metric, or the baseline's name
        metric: String,
        layer_select: bool,
        iterations: u32,
        initial_acc: f64,
        final_acc: f64,
        control_acc: f64,
        finished_early: bool,
        /// final − initial (the seed's "Diff I-F")
        diff_i_f: f64,
        /// final − control (the seed's "Diff F-C")
        diff_f_c: f64,
        /// the arm's run status (complete | finished_early | pool_exhausted)
        status: RunStatus,
    }
);

table!(
    /// `sweep.parquet`: one row per seed × arm × iteration (iteration 0 = the initial model).
    SweepRow {
        seed: i64,
        arm: String,
        metric: String,
        layer_select: bool,
        iteration: u32,
        /// overall test accuracy after this iteration
        accuracy: f64,
        /// the label this iteration targeted (null: none, e.g. the random control)
        target_label: Option<u16>,
        /// test accuracy of the targeted label after this iteration
        target_acc: Option<f64>,
        finished_early: bool,
        status: IterStatus,
        seconds: f64,
    }
);

table!(
    /// `sweep_summary.parquet`: one row per arm over all seeds, against the control.
    SweepSummaryRow {
        arm: String,
        metric: String,
        layer_select: bool,
        seeds: u32,
        mean_initial: f64,
        mean_final: f64,
        /// mean of (arm final − control final); null for the control itself
        mean_delta: Option<f64>,
        /// 95% Student-t interval of the mean delta
        ci_low: Option<f64>,
        ci_high: Option<f64>,
        /// paired t-test and Wilcoxon signed-rank p-values against the control
        t_p: Option<f64>,
        wilcoxon_p: Option<f64>,
        wins: u32,
        losses: u32,
        ties: u32,
        /// labels below θ for the initial model (summed over seeds), and how many of them
        /// ended at or above θ in this arm
        faulty_labels: u32,
        lifted: u32,
    }
);

table!(
    /// `ablation.parquet`: one row per setting × arm × seed (plus one text column per key the
    /// settings override, holding that setting's value).
    AblationRow {
        /// the setting's label ("base", or its overrides)
        setting: String,
        seed: i64,
        arm: String,
        metric: String,
        layer_select: bool,
        initial_acc: f64,
        final_acc: f64,
        /// the control's final accuracy of the same setting and seed
        control_acc: Option<f64>,
        /// final − control
        delta: Option<f64>,
        /// labels below θ for the initial model, and how many of them ended at or above θ
        faulty_labels: u32,
        lifted: u32,
        finished_early: bool,
        pool_exhausted: bool,
    }
);

table!(
    /// A part of a sharded sweep or ablation (`parts/<kind>-<i>-of-<n>.<host>-<pid>.parquet`):
    /// the `sweep.parquet` rows of the shard's (setting, seed) units, each with its setting, and
    /// the per-label test accuracies the summaries need.
    PartRow {
        /// the setting's label ("base" for a sweep)
        setting: String,
        seed: i64,
        arm: String,
        metric: String,
        layer_select: bool,
        iteration: u32,
        accuracy: f64,
        target_label: Option<u16>,
        target_acc: Option<f64>,
        finished_early: bool,
        status: IterStatus,
        seconds: f64,
        /// per-label test accuracy: of the initial model on iteration-0 rows, of the arm's
        /// final model on its last iteration's row; null elsewhere
        label_acc: Option<Vec<f64>>,
    }
);
