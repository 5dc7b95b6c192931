"""Read every Parquet artifact of a pipeline's output with DuckDB and python-polars, unchanged.

Usage: python3 tests/read_outputs.py output/<pipeline>
Exits non-zero (with the file and the error) if any artifact cannot be read or lacks columns.
"""

import pathlib
import sys

import duckdb
import polars as pl

root = pathlib.Path(sys.argv[1])
files = sorted(root.rglob("*.parquet"))
files = [f for f in files if not f.name.startswith(".")]
if not files:
    sys.exit(f"no Parquet files under {root}")

EXPECTED = {
    "splits/train.parquet": {"id", "label", "true_label", "pixels"},
    "activations/train.parquet": {"id", "label", "predicted", "dense_1", "output"},
    "metrics.parquet": {"pipeline", "seed", "arm", "iteration", "scope", "label", "accuracy", "loss", "n"},
    "predictions.parquet": {"id", "label", "predicted", "confidence", "probs"},
    "layers.parquet": {"layer", "position", "width", "probe_accuracy", "bhattacharyya", "is_target", "direction"},
    "heatmaps.parquet": {"label", "kind", "space", "layer", "n", "values"},
    "diagnosis.parquet": {"label", "train_acc", "test_acc", "gap", "underfit", "overfit", "faultiest", "action"},
    "scores.parquet": {"id", "label", "metric", "score", "rank"},
    "batch.parquet": {"id", "label", "origin", "iteration", "arm"},
}

con = duckdb.connect()
for f in files:
    df = pl.read_parquet(f)
    want = EXPECTED.get(f"{f.parent.name}/{f.name}", EXPECTED.get(f.name))
    if want and not want <= set(df.columns):
        sys.exit(f"{f}: polars sees columns {df.columns}, missing {want - set(df.columns)}")
    n = con.execute(f"select count(*) from '{f}'").fetchall()[0][0]
    if n != df.height:
        sys.exit(f"{f}: duckdb counts {n} rows, polars {df.height}")

train = root / "splits" / "train.parquet"
counts = con.execute(f"select label, count(*) from '{train}' group by 1 order by 1").fetchall()
assert len(counts) == 10, counts
width = con.execute(f"select len(pixels) from '{train}' limit 1").fetchall()[0][0]
assert width == 784, width
print(f"duckdb ok: {len(files)} files; train labels {counts}")

t = pl.read_parquet(train)
assert t.schema["pixels"] == pl.Array(pl.Float32, 784), t.schema
m = pl.read_parquet(root / "initial" / "metrics.parquet")
acc = m.filter(pl.col("scope") == "overall")["accuracy"][0]
print(f"polars ok: pixels {t.schema['pixels']}, initial accuracy {acc:.4f}")
