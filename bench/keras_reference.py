"""The same work in Keras/TensorFlow on the CPU, for `make bench` to compare against.

Run by hand; not part of `make test`. Prints wall times in the same words as
`cargo bench --bench stages` and `bench/end_to_end.sh`; `--json FILE` also writes them as
{"label": seconds, ...} for `make bench` to compute the ratios.

    python3 bench/keras_reference.py                 # all figures
    python3 bench/keras_reference.py --quick         # skip both seed loops
    python3 bench/keras_reference.py --json out.json # also write the figures as JSON

TensorFlow lives in a virtual environment, target/keras-venv (git-ignored with target/); when
TensorFlow is not importable, the script re-runs itself with that environment's python:

    python3 -m venv target/keras-venv
    target/keras-venv/bin/pip install -r bench/requirements-keras.txt

Measured with tensorflow-cpu 2.21.0, Keras 3.15.1, numpy 2.4.6 on Python 3.11.7 (the versions
bench/requirements-keras.txt pins; the first line of the output names the versions in use).

What it times (single process, TF's own thread pools, CPU only):
  - the MLP (784-28-28-10) trained on 30 000 MNIST images, 3 epochs, batch 32 (Adam);
  - LeNet-5 (conv 6@5x5 same, pool, conv 16@5x5, pool, dense 120, 84, 10) trained the same way,
    and a probe of 70 000 images through it (every layer's output);
  - the seed loop of the Keras replication (fabriceyhc/mode_nn_debugging, MODE.ipynb), twice:
    the initial MLP, then 5 iterations of MODE (dot, HC heat maps in input space from the test
    split, 500 targeted + 1 500 random drawn from the pool without the targeted label, 3 epochs
    on the batch with the same compiled model, so Adam's state carries over) next to the random
    control (2 000 drawn from its own pool without replacement, 3 epochs).
      * "with layer selection" is the loop `make bench` times for `mode` (arm mode-dot, whose
        layers.enabled = true), as the notebook's cells 39 and 41 run it;
      * "without layer selection" diagnoses on the model's own test predictions (cell 40, the
        seed's Table 2; `mode`'s mode-dot-nols).

Layer selection as the seed does it (py/layer_selection.py, Forward_Layer_Select, called from
MODE.ipynb cells 19, 39 and 41 with epochs = 3 and similarity_threshold = 0.01), every
iteration of the MODE arm:
  - for k = 1, 2, 3 (the Flatten, dense_1, dense_2: every layer but the output layer), a feature
    model = the model's first k layers, frozen, + a fresh Dense(10, softmax) head, compiled with
    Adam (Keras' defaults: learning rate 0.001), sparse categorical cross-entropy and accuracy,
    and fitted on the whole train split (30 000) for 3 epochs at Keras' default batch of 32
    (shuffled); then it predicts the test split;
  - the Bhattacharyya distance 1 - sum(sqrt(P/sum(P) * Q/sum(Q))) (py/distance_metrics.py; each
    matrix normalised over all its entries) between this head's test predictions and the
    previous head's (the first head: against a matrix of ones);
  - the first layer whose distance is <= 0.01 is the target and the scan stops there (later
    heads are not fitted); when none is, the target is the output layer, but the predictions
    the loop goes on with are still those of the last head fitted (dense_2's), as in the seed;
  - the diagnosis uses the target head's test predictions: per-label accuracy, the labels below
    theta = 0.92 underfit, the faultiest (lowest) is targeted; the HC heat map is the mean test
    image of that label among those the head classifies right.

Where this differs from the seed, and from `mode`:
  - The seed freezes the model's own layers (layer.trainable = False on shared layers; Keras
    2.2.4 kept training them in the main model, whose trainable weights it had collected when
    the model was compiled). Keras 3 would freeze them in the main model too, so each feature
    model gets a frozen copy of the first k layers with the model's current weights: the same
    forward work per step, only the head trained.
  - The seed also calls feature_model.evaluate(x_test) after predict (a second pass over the
    test split per head) for an accuracy it only prints; here that accuracy comes from the
    predictions, so the redundant pass is not timed.
  - The seed's control fine-tunes on the first 2 000 pool samples every iteration without
    removing them and keeps going after MODE stops; here, as in `mode`, it draws without
    replacement and both arms stop when no label underfits.
  - `mode`'s feature models are multinomial logistic regressions (L2 = 100 on standardised
    features, 15 L-BFGS iterations, 10 000 of the 30 000 train samples, pipelines/mnist.toml);
    it fits the input-pixel head once (it depends on the train split only) and both hidden
    heads every iteration, and compares the output layer too (the model's own predictions). The
    Keras side does the seed's work instead: gradient-trained Keras heads on all 30 000 train
    samples, all three retrained every iteration, until the first saturated layer.
"""

import argparse
import gzip
import json
import os
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
DATA = ROOT / "data" / "mnist"
VENV = ROOT / "target" / "keras-venv"

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

try:
    import numpy as np  # noqa: E402
    import tensorflow as tf  # noqa: E402
except ImportError:
    python = VENV / "bin" / "python"
    if python.exists() and not os.environ.get("MODE_KERAS_REEXEC"):
        os.environ["MODE_KERAS_REEXEC"] = "1"
        os.execv(str(python), [str(python), str(pathlib.Path(__file__).resolve()), *sys.argv[1:]])
    sys.exit(
        "TensorFlow is not installed: python3 -m venv target/keras-venv && "
        "target/keras-venv/bin/pip install -r bench/requirements-keras.txt"
    )

THETA = 0.92        # mode.theta: a label below it underfits
ALPHA = 0.25        # mode.alpha: share of the batch the strategy chooses
BATCH = 2000        # mode.batch
ITERATIONS = 5      # mode.max_iter
EPOCHS = 3          # train.epochs, retrain.epochs and the seed's feature-model epochs
THRESHOLD = 0.01    # layers.threshold: the Bhattacharyya distance of a saturated layer

FIGURES = {}


def idx(name):
    with gzip.open(DATA / f"{name}.gz") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def timed(label, f):
    t = time.perf_counter()
    v = f()
    s = time.perf_counter() - t
    FIGURES[label] = s
    print(f"{label:<72} {s:>9.3f} s", flush=True)
    return v


def mlp():
    m = tf.keras.Sequential([
        tf.keras.layers.Input((28, 28)),
        tf.keras.layers.Flatten(),
        tf.keras.layers.Dense(28, activation="relu"),
        tf.keras.layers.Dense(28, activation="relu"),
        tf.keras.layers.Dense(10, activation="softmax"),
    ])
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return m


def lenet():
    L = tf.keras.layers
    m = tf.keras.Sequential([
        L.Input((28, 28, 1)),
        L.Conv2D(6, 5, padding="same", activation="relu"),
        L.MaxPooling2D(2),
        L.Conv2D(16, 5, activation="relu"),
        L.MaxPooling2D(2),
        L.Flatten(),
        L.Dense(120, activation="relu"),
        L.Dense(84, activation="relu"),
        L.Dense(10, activation="softmax"),
    ])
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return m


def bhattacharyya(a, b):
    """py/distance_metrics.py's bhattacharyya: each matrix normalised over all its entries."""
    return 1.0 - np.sum(np.sqrt((a / np.sum(a)) * (b / np.sum(b))))


def feature_model(model, k):
    """The seed's feature model: the model's first k layers, frozen, and a fresh softmax head.

    The first k layers are copied with the model's current weights (the seed shares them with
    trainable = False, which in Keras 3 would also freeze them in the model being debugged)."""
    prefix = []
    for layer in model.layers[:k]:
        copy = layer.__class__.from_config(layer.get_config())
        copy.trainable = False
        prefix.append(copy)
    fm = tf.keras.Sequential([tf.keras.layers.Input(model.input_shape[1:]), *prefix,
                              tf.keras.layers.Dense(10, activation="softmax")])
    for copy, layer in zip(prefix, model.layers[:k]):
        copy.set_weights(layer.get_weights())
    fm.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return fm


def forward_layer_select(model, x_train, y_train, x_test):
    """py/layer_selection.py's Forward_Layer_Select: (target layer name, the predictions on the
    test split the diagnosis uses, the distances of the heads fitted)."""
    last = None
    dists = []
    for k in range(1, len(model.layers)):     # every layer but the output layer
        fm = feature_model(model, k)
        fm.fit(x_train, y_train, epochs=EPOCHS, verbose=0)
        pred = fm.predict(x_test, verbose=0)
        d = bhattacharyya(pred, np.ones_like(pred) if last is None else last)
        dists.append(d)
        name = "input" if k == 1 else model.layers[k - 1].name
        if d <= THRESHOLD:
            return name, pred, dists
        last = pred
    return "output", pred, dists                # the last head's predictions, as the seed


def seed_loop(x_train, y_train, pool_x, pool_y, x_test, y_test, layer_selection, notes):
    """The Keras replication's loop (dot), MODE arm and control, with or without layer selection."""
    tf.keras.utils.set_random_seed(123)
    model = mlp()
    model.fit(x_train, y_train, epochs=EPOCHS, verbose=0)
    control = tf.keras.models.clone_model(model)
    control.set_weights(model.get_weights())
    control.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(123)
    px, py = pool_x.copy(), pool_y.copy()
    cpx, cpy = pool_x.copy(), pool_y.copy()
    n_target = int(BATCH * ALPHA)
    select_seconds = 0.0
    for _ in range(ITERATIONS):
        if layer_selection:
            t = time.perf_counter()
            target, probs, dists = forward_layer_select(model, x_train, y_train, x_test)
            select_seconds += time.perf_counter() - t
            notes["targets"].append(f"{target} ({', '.join(f'{d:.4f}' for d in dists)})")
        else:
            probs = model.predict(x_test, verbose=0)
        pred = probs.argmax(1)
        acc = np.array([(pred[y_test == c] == c).mean() for c in range(10)])
        if acc.min() >= THETA:
            break
        label = int(acc.argmin())
        hc = x_test[(y_test == label) & (pred == label)].mean(0).ravel()
        cand = np.flatnonzero(py == label)
        scores = px[cand].reshape(len(cand), -1) @ hc
        chosen = cand[np.argsort(scores)[-n_target:]]
        rest = np.flatnonzero(py != label)
        rnd = rng.choice(rest, BATCH - n_target, replace=False)
        batch = np.concatenate([chosen, rnd])
        model.fit(px[batch], py[batch], epochs=EPOCHS, verbose=0)
        keep = np.setdiff1d(np.arange(len(py)), batch)
        px, py = px[keep], py[keep]
        cb = rng.choice(len(cpy), BATCH, replace=False)
        control.fit(cpx[cb], cpy[cb], epochs=EPOCHS, verbose=0)
        keep = np.setdiff1d(np.arange(len(cpy)), cb)
        cpx, cpy = cpx[keep], cpy[keep]
        notes["labels"].append(label)
    notes["layer selection"] = select_seconds
    notes["mode"] = model.evaluate(x_test, y_test, verbose=0)[1]
    notes["control"] = control.evaluate(x_test, y_test, verbose=0)[1]


def run_seed_loop(label, layer_selection, *data):
    notes = {"targets": [], "labels": []}
    timed(label, lambda: seed_loop(*data, layer_selection, notes))
    parts = [f"targeted labels {notes['labels']}"]
    if layer_selection:
        parts.append(f"layer selection {notes['layer selection']:.1f} s")
        parts.append("targets (distances): " + "; ".join(notes["targets"]))
    parts.append(f"final test accuracy MODE {notes['mode']:.4f}, control {notes['control']:.4f}")
    print("    " + "; ".join(parts), flush=True)


def write_json(path, figures):
    path = pathlib.Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(figures, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="skip the seed loops")
    ap.add_argument("--json", metavar="FILE", help="also write the figures as {label: seconds}")
    args = ap.parse_args()

    keras = tf.keras.__version__ if hasattr(tf.keras, "__version__") else "?"
    print(f"== Keras {keras} on TensorFlow {tf.__version__}, numpy {np.__version__}, "
          f"Python {sys.version.split()[0]}, CPU ({os.cpu_count()} cores) ==", flush=True)
    x = idx("train-images-idx3-ubyte").astype(np.float32) / 255.0
    y = idx("train-labels-idx1-ubyte").astype(np.int64)
    xt = idx("t10k-images-idx3-ubyte").astype(np.float32) / 255.0
    yt = idx("t10k-labels-idx1-ubyte").astype(np.int64)
    order = np.random.default_rng(123).permutation(len(y))
    tr, po = order[:30000], order[30000:]
    m = mlp()
    timed("MLP: train 30 000 × 3 epochs, batch 32", lambda: m.fit(x[tr], y[tr], epochs=3, verbose=0))
    n = lenet()
    x4 = x[..., None]
    timed("LeNet-5: train 30 000 × 3 epochs, batch 32", lambda: n.fit(x4[tr], y[tr], epochs=3, verbose=0))
    probe = tf.keras.Model(n.inputs, [layer.output for layer in n.layers])
    allx = np.concatenate([x4, xt[..., None]])
    timed("LeNet-5: probe 70 000 images, every layer", lambda: probe.predict(allx, batch_size=1024, verbose=0))
    if not args.quick:
        data = (x[tr], y[tr], x[po], y[po], xt, yt)
        run_seed_loop("seed loop with layer selection (MLP; mode-dot + random, 5 iterations)", True, *data)
        run_seed_loop("seed loop without layer selection (MLP; mode-dot + random, 5 iterations)", False, *data)
    if args.json:
        write_json(args.json, FIGURES)


if __name__ == "__main__":
    main()
