"""Write a model's activations in mode's contract, from any framework (needs numpy, pyarrow).

    python3 examples/write_activations.py SPLIT.parquet OUT.parquet

`write_activations` is the contract: `id` (uint32), `label` and `predicted` (uint16), one
FixedSizeList<float32, width> column per recorded layer, the last named `output` holding the
class probabilities, and the layer names in order in the metadata key `mode.layers`. Rows must
be the split's rows, in its order. `forward` is a stand-in for your model (a fixed random
projection of the pixels): replace it with your network's forward pass.
"""
import os
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def write_activations(path, ids, labels, layers):
    """layers: [(name, 2-D array n × width), ...], the last ("output", probabilities)."""
    cols = {"id": pa.array(ids, pa.uint32()), "label": pa.array(labels, pa.uint16()),
            "predicted": pa.array(np.argmax(layers[-1][1], axis=1), pa.uint16())}
    for name, a in layers:
        a = np.ascontiguousarray(a, dtype=np.float32)
        cols[name] = pa.FixedSizeListArray.from_arrays(pa.array(a.ravel()), a.shape[1])
    table = pa.table(cols).replace_schema_metadata({"mode.layers": ",".join(n for n, _ in layers)})
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    pq.write_table(table, path)


def forward(pixels, classes):
    rng = np.random.default_rng(0)
    hidden = np.maximum(pixels @ rng.normal(size=(pixels.shape[1], 32)) * 0.1, 0)
    z = hidden @ rng.normal(size=(32, classes))
    p = np.exp(z - z.max(axis=1, keepdims=True))
    return [("hidden", hidden), ("output", p / p.sum(axis=1, keepdims=True))]


if __name__ == "__main__":
    split = pq.read_table(sys.argv[1])
    n, classes = split.num_rows, int(pq.read_metadata(sys.argv[1]).metadata[b"mode.classes"])
    pixels = split["pixels"].combine_chunks().flatten().to_numpy().reshape(n, -1)
    ids, labels = split["id"].to_numpy(), split["label"].to_numpy()
    write_activations(sys.argv[2], ids, labels, forward(pixels, classes))
