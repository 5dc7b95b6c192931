"""The same work in Keras/TensorFlow on the CPU, for `make bench` to compare against.

Run by hand when TensorFlow is installed (`python3 -m pip install tensorflow-cpu`); not part of
`make test`. Prints wall times in the same words as `cargo bench --bench stages` and, given the
Rust figures on the command line, the ratios.

    python3 bench/keras_reference.py            # all figures
    python3 bench/keras_reference.py --quick    # skip the seed loop

What it times (single process, TF's own thread pools, CPU only):
  - the MLP (784-28-28-10) trained on 30 000 MNIST images, 3 epochs, batch 32 (Adam);
  - LeNet-5 (conv 6@5x5 same, pool, conv 16@5x5, pool, dense 120, 84, 10) trained the same way,
    and a probe of 70 000 images through it (every layer's output);
  - the seed loop of the Keras replication: 5 iterations of MODE (dot, HC heat maps from the test
    split, 500 targeted + 1 500 random from the pool, 3 epochs on the batch with the same
    compiled model) next to the random control — the loop `make bench` times as "seed loop".
"""

import gzip
import os
import pathlib
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402

try:
    import tensorflow as tf  # noqa: E402
except ImportError:
    sys.exit("TensorFlow is not installed: python3 -m pip install tensorflow-cpu")

ROOT = pathlib.Path(__file__).resolve().parent.parent
DATA = ROOT / "data" / "mnist"


def idx(name):
    with gzip.open(DATA / f"{name}.gz") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def timed(label, f):
    t = time.perf_counter()
    v = f()
    print(f"{label:<46} {time.perf_counter() - t:>9.3f} s")
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


def seed_loop(x_train, y_train, pool_x, pool_y, x_test, y_test):
    """The Keras replication's loop (dot, without layer selection), MODE arm and control."""
    model = mlp()
    model.fit(x_train, y_train, epochs=3, verbose=0)
    control = tf.keras.models.clone_model(model)
    control.set_weights(model.get_weights())
    control.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(123)
    px, py = pool_x.copy(), pool_y.copy()
    cpx, cpy = pool_x.copy(), pool_y.copy()
    for _ in range(5):
        pred = model.predict(x_test, verbose=0).argmax(1)
        acc = np.array([(pred[y_test == c] == c).mean() for c in range(10)])
        if acc.min() >= 0.92:
            break
        label = int(acc.argmin())
        hc = x_test[(y_test == label) & (pred == label)].mean(0).ravel()
        cand = np.flatnonzero(py == label)
        scores = px[cand].reshape(len(cand), -1) @ hc
        chosen = cand[np.argsort(scores)[-500:]]
        rest = np.setdiff1d(np.flatnonzero(py != label), chosen)
        rnd = rng.choice(rest, 1500, replace=False)
        batch = np.concatenate([chosen, rnd])
        model.fit(px[batch], py[batch], epochs=3, verbose=0)
        keep = np.setdiff1d(np.arange(len(py)), batch)
        px, py = px[keep], py[keep]
        cb = rng.choice(len(cpy), 2000, replace=False)
        control.fit(cpx[cb], cpy[cb], epochs=3, verbose=0)
        keep = np.setdiff1d(np.arange(len(cpy)), cb)
        cpx, cpy = cpx[keep], cpy[keep]
    return model.evaluate(x_test, y_test, verbose=0)[1], control.evaluate(x_test, y_test, verbose=0)[1]


def main():
    print(f"== Keras {tf.keras.__version__ if hasattr(tf.keras, '__version__') else ''} on TensorFlow {tf.__version__}, CPU ==")
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
    if "--quick" not in sys.argv:
        timed("seed loop (MLP; mode-dot + random, 5 iterations)",
              lambda: seed_loop(x[tr], y[tr], x[po], y[po], xt, yt))


if __name__ == "__main__":
    main()
