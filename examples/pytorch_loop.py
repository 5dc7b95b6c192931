"""Your own trainer in the MODE loop, with PyTorch.

RUN BY HAND WHEN TORCH IS INSTALLED; it is not part of `make test`:

    python3 -m pip install torch onnx pyarrow numpy
    cargo build --release
    target/release/mode --pipeline pipelines/smoke.toml --root output/mine split
    python3 examples/pytorch_loop.py --pipeline pipelines/smoke.toml --root output/mine

It trains a small MLP on splits/train.parquet, then for k = 1, 2, …: exports the model as
output/mine/model_k.onnx, runs `mode debug --onnx model_k.onnx --iteration k`, reads
runs/<arm>/iter-k/batch.csv, continues training on those samples, and goes on with k + 1.
The samples' pixels come from splits/pool.parquet by id (the same values `mode` probed);
batch.csv's `source` column names the original image file or table row, for your own loader.
"""
import argparse
import csv
import subprocess

import numpy as np
import pyarrow.parquet as pq
import torch
from torch import nn


def read_split(path):
    t = pq.read_table(path)
    x = t["pixels"].combine_chunks().flatten().to_numpy().reshape(t.num_rows, -1)
    return t["id"].to_numpy(), torch.tensor(x), torch.tensor(t["label"].to_numpy().astype(np.int64))


def train(model, x, y, epochs=3, lr=1e-3):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(epochs):
        for idx in torch.randperm(len(y)).split(32):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()


def export(model, features, path):
    """An ONNX file with a symbolic batch (the TorchScript exporter: dynamo=False)."""
    model.eval()
    kw = dict(input_names=["input"], output_names=["logits"],
              dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
    try:
        torch.onnx.export(model, torch.zeros(1, features), path, dynamo=False, **kw)
    except TypeError:  # torch < 2.5 has no `dynamo` argument
        torch.onnx.export(model, torch.zeros(1, features), path, **kw)
    model.train()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pipeline", default="pipelines/smoke.toml")
    ap.add_argument("--root", default="output/mine")
    ap.add_argument("--mode", default="target/release/mode")
    ap.add_argument("--arm", default="mode-dot")
    ap.add_argument("--iterations", type=int, default=3)
    a = ap.parse_args()
    mode = [a.mode, "--pipeline", a.pipeline, "--root", a.root]
    path = lambda *p: "/".join([a.root, *p])

    torch.manual_seed(0)
    _, x, y = read_split(path("splits", "train.parquet"))
    pool_ids, pool_x, pool_y = read_split(path("splits", "pool.parquet"))
    row_of = {int(i): r for r, i in enumerate(pool_ids)}
    classes = int(pq.read_metadata(path("splits", "train.parquet")).metadata[b"mode.classes"])
    model = nn.Sequential(nn.Linear(x.shape[1], 28), nn.ReLU(), nn.Linear(28, 28), nn.ReLU(),
                          nn.Linear(28, classes))
    train(model, x, y)
    for k in range(1, a.iterations + 1):
        onnx_file = path(f"model_{k}.onnx")
        export(model, x.shape[1], onnx_file)
        subprocess.run(mode + ["debug", "--onnx", onnx_file, "--iteration", str(k), "--arm", a.arm],
                       check=True)
        with open(path("runs", a.arm, f"iter-{k}", "batch.csv")) as f:
            batch = list(csv.DictReader(f))
        if not batch:
            print(f"iteration {k}: no faulty label left; done")
            break
        rows = torch.tensor([row_of[int(r["id"])] for r in batch])
        targeted = sum(r["origin"] == "targeted" for r in batch)
        print(f"iteration {k}: retraining on {len(batch)} samples ({targeted} targeted)")
        train(model, pool_x[rows], pool_y[rows])


if __name__ == "__main__":
    main()
