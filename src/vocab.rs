//! The categorical values that artifacts record (Parquet columns, the report) and several
//! layers share: each is one enum, spelled the same in pipeline files, Parquet columns, the
//! command line and the report. Choices only a pipeline section makes are defined beside
//! that section, the layer kinds with the architecture.

use crate::text_enum;

text_enum!(
    /// Where heat maps are computed.
    pub enum Space("heat-map space") {
        /// Mean pixels (the Keras replication's choice).
        Input = "input",
        /// Mean target-layer activations (the paper's choice).
        Feature = "feature",
    }
);

text_enum!(
    /// Similarity / distance metrics for input selection (scipy's definitions).
    pub enum Metric("metric") {
        Dot = "dot",
        Cosine = "cosine",
        Manhattan = "manhattan",
        Euclidean = "euclidean",
        Minkowski = "minkowski",
        Chebyshev = "chebyshev",
        Wasserstein = "wasserstein",
        Canberra = "canberra",
        Braycurtis = "braycurtis",
    }
);

text_enum!(
    /// A heat map's kind. HC: inputs of the label classified correctly; HM: inputs of other
    /// labels classified as it (false positives); HW: inputs of the label classified otherwise
    /// (false negatives); DH_CM, DH_CW: differential maps of the label; DH_CC: HC of the label
    /// minus HC of another label.
    pub enum MapKind("heat-map kind") {
        Hc = "HC",
        Hm = "HM",
        Hw = "HW",
        DhCm = "DH_CM",
        DhCw = "DH_CW",
        DhCc = "DH_CC",
    }
);

text_enum!(
    /// Scan direction of the layer selection.
    pub enum Direction("direction") {
        /// Input → output (underfitting): each layer compared with the previous one.
        Forward = "forward",
        /// Output → input (overfitting): each layer compared with the next one.
        Backward = "backward",
    }
);

text_enum!(
    /// What the diagnosis asks for a label.
    pub enum Action("action") {
        FixUnderfit = "fix_underfit",
        FixOverfit = "fix_overfit",
        None = "none",
    }
);

text_enum!(
    /// A metrics row's scope.
    pub enum Scope("scope") {
        Overall = "overall",
        Label = "label",
    }
);

text_enum!(
    /// Why a sample is in a batch.
    pub enum Origin("origin") {
        /// Chosen by the arm's strategy (the α share).
        Targeted = "targeted",
        /// Drawn at random (the rest of the batch).
        Random = "random",
    }
);

text_enum!(
    /// What happened in one iteration of an arm.
    pub enum IterStatus("iteration status") {
        /// A full batch was selected and trained on.
        Ran = "ran",
        /// No label was faulty: nothing to fix (the batch is empty, or random with
        /// `mode.on_finish = "random"`).
        FinishedEarly = "finished_early",
        /// The pool held fewer samples than the batch asks for.
        PoolExhausted = "pool_exhausted",
    }
);

text_enum!(
    /// The state of an arm's run, in its manifest.
    pub enum RunStatus("run status") {
        /// Every iteration ran.
        Complete = "complete",
        /// Every iteration ran; at some point no label was faulty.
        FinishedEarly = "finished_early",
        /// Every iteration ran; the pool ran out before the end.
        PoolExhausted = "pool_exhausted",
        /// Fewer iterations than `mode.max_iter` are complete (killed, failed, or running).
        Interrupted = "interrupted",
    }
);

text_enum!(
    /// Whose predictions decided a diagnosis: the model's own (the target is the output layer,
    /// or its feature model was not trusted) or the target layer's feature model.
    pub enum Decider("decider") { Model = "model", FeatureModel = "feature_model" }
);
