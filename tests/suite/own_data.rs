//! A user's own data and model: an image folder of generated PNGs and a Parquet table through
//! `mode split`, the loop with an ONNX model (`mode debug`), activations written by a Python
//! script (examples/write_activations.py) driving layers → heatmap → select, and bad input.

use image::{GrayImage, Luma, Rgb, RgbImage};
use mode::artifacts::{
    Artifact, BatchCsv, BatchRow, LayerRow, Layout, MetricRow, PoolRow, Samples, SourceRow, Split,
};
use mode::vocab::Origin;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn scratch(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("own-data")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `mode --pipeline pipelines/smoke.toml --root ROOT <args>`.
fn mode(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mode"))
        .current_dir(repo())
        .args(["--pipeline", "pipelines/smoke.toml", "--root"])
        .arg(root)
        .args(args)
        .output()
        .unwrap()
}

fn ok(o: Output) {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// One `error:` line containing `needle`, and no split file in `root/splits`.
fn fails(o: Output, needle: &str, root: &Path) {
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(!o.status.success(), "must fail: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].contains(needle), "{needle:?} not in {err}");
    let left = std::fs::read_dir(root.join("splits")).map_or(0, |d| d.count());
    assert_eq!(left, 0, "nothing written: {err}");
}

fn set(key: &str, value: &str) -> [String; 2] {
    ["--set".into(), format!("{key}={value}")]
}

fn args<'a>(head: &[&'a str], sets: &'a [[String; 2]]) -> Vec<&'a str> {
    let mut v: Vec<&str> = head.to_vec();
    for s in sets {
        v.extend(s.iter().map(String::as_str));
    }
    v
}

/// Three classes of 8×8 grayscale PNGs (`n` each), pixel (x, y) = 10·class + x + y.
fn gray_folder(dir: &Path, n: usize) {
    for (c, class) in ["cat", "dog", "eel"].iter().enumerate() {
        std::fs::create_dir_all(dir.join(class)).unwrap();
        for i in 0..n {
            let img = GrayImage::from_fn(8, 8, |x, y| {
                Luma([(10 * c as u32 + x + y + i as u32) as u8])
            });
            img.save(dir.join(class).join(format!("{i:02}.png")))
                .unwrap();
        }
    }
}

#[test]
fn an_image_folder_is_split_with_its_sources() {
    let t = scratch("folder");
    let images = t.join("images");
    gray_folder(&images, 10);
    // One RGB image makes the whole set RGB.
    RgbImage::from_fn(8, 8, |x, _| Rgb([200, x as u8, 0]))
        .save(images.join("dog/zz.png"))
        .unwrap();
    let root = t.join("root");
    let sets = [set("data.images", images.to_str().unwrap())];
    ok(mode(&root, &args(&["split"], &sets)));
    let l = Layout::new(&root);
    let train = Samples::read(&l.split(Split::Train)).unwrap();
    let pool = Samples::read(&l.split(Split::Pool)).unwrap();
    let test = Samples::read(&l.split(Split::Test)).unwrap();
    assert_eq!(
        (train.meta.channels, train.meta.height, train.meta.width),
        (3, 8, 8)
    );
    assert_eq!(train.meta.class_names, ["cat", "dog", "eel"]);
    assert_eq!(test.len(), 6, "data.test_fraction 0.2 of 31");
    assert_eq!(train.len() + pool.len() + test.len(), 31);
    let sources = Vec::<SourceRow>::read(&l.sources()).unwrap();
    assert_eq!(sources.len(), 31);
    let ids: HashSet<u32> = sources.iter().map(|r| r.id).collect();
    assert_eq!(ids.len(), 31);
    for s in [&train, &pool, &test] {
        for (k, id) in s.ids.iter().enumerate() {
            let r = sources.iter().find(|r| r.id == *id).unwrap();
            let file = PathBuf::from(&r.source);
            assert!(file.exists(), "{file:?}");
            // C × H × W: the red channel first, then green, then blue; /255.
            let img = image::open(&file).unwrap().to_rgb8();
            let px = s.pixels.row(k);
            for (x, y) in [(0u32, 0u32), (3, 5), (7, 7)] {
                let want = img.get_pixel(x, y).0;
                for c in 0..3 {
                    let got = px[c * 64 + (y * 8 + x) as usize];
                    assert_eq!(
                        got,
                        want[c] as f32 / 255.0,
                        "{file:?} ({x}, {y}) channel {c}"
                    );
                }
            }
            let class = file
                .parent()
                .unwrap()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .to_string();
            assert_eq!(s.meta.class_names[s.labels[k] as usize], class);
        }
    }
    // Declared size: every image resized; grayscale when asked.
    let root2 = t.join("root2");
    let sets = [
        set("data.images", images.to_str().unwrap()),
        set("data.height", "4"),
        set("data.width", "4"),
        set("data.channels", "1"),
    ];
    ok(mode(&root2, &args(&["split"], &sets)));
    let s = Samples::read(&Layout::new(&root2).split(Split::Train)).unwrap();
    assert_eq!((s.meta.channels, s.pixels.ncols()), (1, 16));
}

#[test]
fn bad_image_folders_are_clear_errors() {
    let t = scratch("bad-folders");
    let case = |name: &str, make: &dyn Fn(&Path), needle: &str| {
        let images = t.join(name);
        gray_folder(&images, 4);
        make(&images);
        let root = t.join(format!("{name}-root"));
        let sets = [set("data.images", images.to_str().unwrap())];
        fails(mode(&root, &args(&["split"], &sets)), needle, &root);
    };
    case(
        "empty",
        &|d| std::fs::create_dir_all(d.join("fox")).unwrap(),
        "class folder \"fox\" holds no .png or .jpg images",
    );
    case(
        "garbage",
        &|d| std::fs::write(d.join("dog/bad.png"), b"not a png").unwrap(),
        "dog/bad.png: cannot read the image",
    );
    case(
        "sizes",
        &|d| GrayImage::new(9, 8).save(d.join("eel/wide.png")).unwrap(),
        "eel/wide.png: the image is 8×9 but",
    );
    case(
        "none",
        &|d| {
            for c in ["cat", "dog", "eel"] {
                std::fs::remove_dir_all(d.join(c)).unwrap();
            }
        },
        "no class folders",
    );
}

#[test]
fn a_parquet_table_is_split() {
    use polars::prelude::*;
    let t = scratch("table");
    let n = 50usize;
    let labels: Vec<&str> = (0..n).map(|i| ["b", "a"][i % 2]).collect();
    let rows: Vec<Series> = (0..n)
        .map(|i| {
            Series::new(
                "".into(),
                (0..12u32)
                    .map(|j| ((i + j as usize) % 256) as u8)
                    .collect::<Vec<u8>>(),
            )
        })
        .collect();
    let mut df = DataFrame::new(
        n,
        vec![
            Column::new("kind".into(), labels),
            Column::new("values".into(), rows),
        ],
    )
    .unwrap();
    let file = t.join("samples.parquet");
    ParquetWriter::new(std::fs::File::create(&file).unwrap())
        .finish(&mut df)
        .unwrap();
    let root = t.join("root");
    let sets = [
        set("data.table", file.to_str().unwrap()),
        set("data.label_column", "kind"),
        set("data.pixels_column", "values"),
        set("data.channels", "3"),
        set("data.height", "2"),
        set("data.width", "2"),
    ];
    ok(mode(&root, &args(&["split"], &sets)));
    let l = Layout::new(&root);
    let test = Samples::read(&l.split(Split::Test)).unwrap();
    assert_eq!((test.len(), test.meta.features()), (10, 12));
    assert_eq!(test.meta.class_names, ["a", "b"]);
    let k = 0;
    let id = test.ids[k] as usize;
    assert_eq!(test.labels[k], if id.is_multiple_of(2) { 1 } else { 0 });
    assert_eq!(test.pixels[[k, 5]], ((id + 5) % 256) as f32 / 255.0);
    let sources = Vec::<SourceRow>::read(&l.sources()).unwrap();
    let r = sources.iter().find(|r| r.id == id as u32).unwrap();
    assert_eq!(r.source, format!("{}#{id}", file.display()));
    assert_eq!(r.split, "test");
    // The shape must fit the rows.
    let root = t.join("root-bad");
    let mut bad = sets.clone();
    bad[5] = set("data.width", "3");
    fails(mode(&root, &args(&["split"], &bad)), "2×3", &root);
}

fn fixture(name: &str) -> String {
    repo()
        .join("tests/fixtures")
        .join(name)
        .display()
        .to_string()
}

/// The loop with an ONNX model: `mode debug` for iterations 1 and 2 on the smoke data.
#[test]
fn the_loop_runs_from_an_onnx_model() {
    let root = scratch("debug");
    ok(mode(&root, &["split"]));
    let mlp = fixture("mlp.onnx");
    ok(mode(&root, &["debug", "--onnx", &mlp, "--iteration", "1"]));
    let l = Layout::new(&root);
    let d1 = l.iter("mode-dot", 1);
    let csv = BatchCsv::read(&d1.batch_csv()).unwrap().0;
    let batch = Vec::<BatchRow>::read(&d1.batch()).unwrap();
    assert_eq!(csv.len(), 200, "mode.batch of the smoke pipeline");
    assert_eq!(
        csv.iter()
            .map(|r| (r.id, r.label, r.origin))
            .collect::<Vec<_>>(),
        batch
            .iter()
            .map(|b| (b.id, b.label, b.origin))
            .collect::<Vec<_>>()
    );
    let targeted = csv.iter().filter(|r| r.origin == Origin::Targeted).count();
    assert_eq!(targeted, 50, "round(α · batch) targeted rows");
    // Sources: the pool split file and the row in it.
    let pool = Samples::read(&l.split(Split::Pool)).unwrap();
    for r in &csv {
        let row = pool.ids.iter().position(|&id| id == r.id).unwrap();
        assert_eq!(r.source, format!("splits/pool.parquet#{row}"));
    }
    let m = Vec::<MetricRow>::read(&d1.metrics()).unwrap();
    assert_eq!((m[0].iteration, m[0].n), (1, 1000));
    assert!(
        (m[0].accuracy - 0.866).abs() < 1e-9,
        "the fixture's accuracy: {}",
        m[0].accuracy
    );
    for f in [
        d1.layers(),
        d1.heatmaps(),
        d1.diagnosis(),
        d1.scores(),
        d1.pool(),
    ] {
        assert!(f.exists(), "{f:?}");
    }
    let acts = mode::artifacts::Activations::read(&d1.activations("train")).unwrap();
    assert_eq!(acts.info["mode.output"], "model probabilities");
    // Iteration 2 starts from iteration 1's pool.
    ok(mode(&root, &["debug", "--onnx", &mlp, "--iteration", "2"]));
    let d2 = l.iter("mode-dot", 2);
    let left1 = Vec::<PoolRow>::read(&d1.pool()).unwrap();
    let left2 = Vec::<PoolRow>::read(&d2.pool()).unwrap();
    assert_eq!((left1.len(), left2.len()), (1800, 1600));
    let first: HashSet<u32> = csv.iter().map(|r| r.id).collect();
    let second = BatchCsv::read(&d2.batch_csv()).unwrap().0;
    assert!(
        second.iter().all(|r| !first.contains(&r.id)),
        "no sample twice"
    );
    // Iteration 1 again: iteration 2 came from the pool it replaces, and goes.
    ok(mode(&root, &["debug", "--onnx", &mlp, "--iteration", "1"]));
    assert!(d1.batch_csv().exists() && !d2.path().exists());
    // Bad model: nothing of iteration 2 written.
    let o = mode(
        &root,
        &["debug", "--onnx", &fixture("cnn.onnx"), "--iteration", "2"],
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("N×1×28×28"));
    assert!(!d2.path().exists(), "nothing half-written");
    let o = mode(&root, &["debug", "--onnx", &mlp, "--iteration", "3"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("run `mode debug --iteration 2` first"));
    // The report of a debug loop: its diagnosis first.
    ok(mode(&root, &["report"]));
    let html = std::fs::read_to_string(root.join("report/index.html")).unwrap();
    assert!(
        html.contains("The answer") && html.contains("mlp.onnx"),
        "{html}"
    );
}

/// MNIST images as a PNG folder (10 classes × 40), split, and debugged with the ONNX MLP:
/// batch.csv names the image files.
#[test]
fn the_loop_on_an_image_folder() {
    let t = scratch("folder-loop");
    let src = t.join("src");
    ok(mode(&src, &["split"]));
    let test = Samples::read(&Layout::new(&src).split(Split::Test)).unwrap();
    let images = t.join("images");
    let mut count = [0usize; 10];
    for (k, &l) in test.labels.iter().enumerate() {
        if count[l as usize] == 40 {
            continue;
        }
        count[l as usize] += 1;
        let dir = images.join(format!("digit-{l}"));
        std::fs::create_dir_all(&dir).unwrap();
        let px = test.pixels.row(k);
        GrayImage::from_fn(28, 28, |x, y| {
            Luma([(px[(y * 28 + x) as usize] * 255.0).round() as u8])
        })
        .save(dir.join(format!("{k}.png")))
        .unwrap();
    }
    let root = t.join("root");
    let sets = [
        set("data.images", images.to_str().unwrap()),
        set("mode.batch", "40"),
    ];
    ok(mode(&root, &args(&["split"], &sets)));
    let mlp = fixture("mlp.onnx");
    ok(mode(
        &root,
        &args(&["debug", "--onnx", &mlp, "--iteration", "1"], &sets),
    ));
    let csv = BatchCsv::read(&Layout::new(&root).iter("mode-dot", 1).batch_csv())
        .unwrap()
        .0;
    assert_eq!(csv.len(), 40);
    for r in &csv {
        assert!(
            r.source.ends_with(".png") && Path::new(&r.source).exists(),
            "{}",
            r.source
        );
        assert!(
            r.source.contains(&format!("digit-{}", r.label)),
            "{}",
            r.source
        );
    }
}

/// Activations written by examples/write_activations.py (pyarrow) drive `mode layers`,
/// `mode heatmap` and `mode select`.
#[test]
fn activations_from_python_drive_layers_heatmap_and_select() {
    let root = scratch("python-activations");
    ok(mode(&root, &["split"]));
    let have_pyarrow = Command::new("python3")
        .args(["-c", "import numpy, pyarrow"])
        .status()
        .is_ok_and(|s| s.success());
    let l = Layout::new(&root);
    let d = l.iter("mode-dot", 1);
    for split in [Split::Train, Split::Test] {
        if have_pyarrow {
            let o = Command::new("python3")
                .arg(repo().join("examples/write_activations.py"))
                .arg(l.split(split))
                .arg(d.activations(split.as_str()))
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        } else {
            eprintln!(
                "pyarrow is missing (python3 -m pip install numpy pyarrow): the activations are written in Rust instead of by examples/write_activations.py"
            );
            stand_in_activations(&l.split(split), &d.activations(split.as_str()));
        }
    }
    let at = ["--arm", "mode-dot", "--iteration", "1"];
    for stage in ["layers", "heatmap", "select"] {
        let mut a = vec![stage];
        a.extend(at);
        ok(mode(&root, &a));
    }
    let layers = Vec::<LayerRow>::read(&d.layers()).unwrap();
    let names: Vec<&str> = layers.iter().map(|r| r.layer.as_str()).collect();
    assert!(
        names.contains(&"hidden") && names.contains(&"output"),
        "{names:?}"
    );
    assert!(d.head("hidden").exists());
    let batch = Vec::<BatchRow>::read(&d.batch()).unwrap();
    assert_eq!(batch.len(), 200);
    // Activations whose rows are not the split's are refused.
    stand_in_activations(&l.split(Split::Pool), &d.activations("test"));
    let mut a = vec!["layers"];
    a.extend(at);
    let o = mode(&root, &a);
    assert!(String::from_utf8_lossy(&o.stderr).contains("their ids must be the split's"));
}

/// What examples/write_activations.py writes, written in Rust: a hidden layer (a fixed
/// projection of the pixels, ReLU) and the softmax of a projection of it.
fn stand_in_activations(split: &Path, out: &Path) {
    use mode::artifacts::Activations;
    use ndarray::Array2;
    let s = Samples::read(split).unwrap();
    let d = s.pixels.ncols();
    let w = Array2::from_shape_fn((d, 32), |(i, j)| {
        ((i * 31 + j * 17) % 13) as f32 / 13.0 - 0.45
    });
    let hidden = s.pixels.dot(&w).mapv(|v| (0.1 * v).max(0.0));
    let v = Array2::from_shape_fn((32, s.meta.classes), |(i, j)| {
        ((i * 7 + j * 5) % 11) as f32 / 11.0 - 0.5
    });
    let mut probs = hidden.dot(&v);
    for mut r in probs.rows_mut() {
        let m = r.fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        r.mapv_inplace(|x| (x - m).exp());
        let sum = r.sum();
        r.mapv_inplace(|x| x / sum);
    }
    Activations {
        ids: s.ids.clone(),
        labels: s.labels.clone(),
        predicted: probs
            .rows()
            .into_iter()
            .map(|r| mode::numeric::argmax(r.iter().copied()) as u16)
            .collect(),
        layers: vec![("hidden".into(), hidden), ("output".into(), probs)],
        info: Default::default(),
    }
    .write(out)
    .unwrap();
}

/// Activations as columns, to be changed the way a user's writer might get them wrong.
struct Written {
    cols: Vec<mode::artifacts::tensor::Col>,
    meta: std::collections::BTreeMap<String, String>,
}

impl Written {
    fn of(a: &mode::artifacts::Activations) -> Written {
        use mode::artifacts::tensor::Col;
        let mut cols = vec![
            Col::u32("id", a.ids.clone()),
            Col::u16("label", a.labels.clone()),
            Col::u16("predicted", a.predicted.clone()),
        ];
        for (name, m) in &a.layers {
            cols.push(Col::tensor(name, m.clone()));
        }
        let names: Vec<&str> = a.layers.iter().map(|(n, _)| n.as_str()).collect();
        let meta = [("mode.layers".to_string(), names.join(","))].into();
        Written { cols, meta }
    }

    fn set(&mut self, name: &str, array: arrow::array::ArrayRef) {
        let c = self.cols.iter_mut().find(|c| c.name == name).unwrap();
        c.nullable = array.null_count() > 0;
        c.array = array;
    }

    fn write(self, path: &Path) {
        mode::artifacts::tensor::write_tensors(path, self.cols, &self.meta).unwrap();
    }
}

fn with_layer(
    a: &mode::artifacts::Activations,
    name: &str,
    m: ndarray::Array2<f32>,
) -> mode::artifacts::Activations {
    let mut a = a.clone();
    a.layers.iter_mut().find(|(n, _)| n == name).unwrap().1 = m;
    a
}

fn run_stages(root: &Path, arm: &str, stages: &[&str]) -> Output {
    let mut last = None;
    for stage in stages {
        let o = mode(root, &[stage, "--arm", arm, "--iteration", "1"]);
        let failed = !o.status.success();
        last = Some(o);
        if failed {
            break;
        }
    }
    last.unwrap()
}

/// One `error:` line containing `needle`, exit 1 (never a panic).
fn refused(o: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(
        o.status.code(),
        Some(1),
        "exit 1, not a panic or success: {err}"
    );
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].contains(needle), "{needle:?} not in {err}");
}

/// Activations a user wrote wrong are refused with what is wrong and where — never a panic,
/// never a table computed from misread values.
#[test]
fn user_activations_are_checked_against_the_split() {
    use arrow::array::{ArrayRef, Int64Array, UInt32Array};
    use mode::artifacts::Activations;
    use std::sync::Arc;
    let root = scratch("bad-activations");
    ok(mode(&root, &["split"]));
    let l = Layout::new(&root);
    let d = l.iter("mode-dot", 1);
    for split in [Split::Train, Split::Test, Split::Pool] {
        stand_in_activations(&l.split(split), &d.activations(split.as_str()));
    }
    let test_path = d.activations("test");
    let test = Activations::read(&test_path).unwrap();
    let train = Activations::read(&d.activations("train")).unwrap();
    let stages = ["layers", "heatmap", "select"];
    ok(run_stages(&root, "mode-dot", &stages));
    let reference: Vec<u8> = std::fs::read(d.batch()).unwrap();
    let shown = test_path.display().to_string();
    let case = |w: Written, needle: &str| {
        w.write(&test_path);
        refused(
            &run_stages(&root, "mode-dot", &stages),
            &format!("{shown}: {needle}"),
        );
    };
    // an output column 11 wide for 10 classes
    let mut wide = ndarray::Array2::<f32>::zeros((test.len(), 11));
    wide.slice_mut(ndarray::s![.., ..10])
        .assign(test.probs().unwrap());
    case(
        Written::of(&with_layer(&test, "output", wide)),
        "column \"output\" is 11 wide but the split",
    );
    // a hidden layer 16 wide in test, 32 in train
    let narrow = test
        .layer("hidden")
        .unwrap()
        .slice(ndarray::s![.., ..16])
        .to_owned();
    case(
        Written::of(&with_layer(&test, "hidden", narrow)),
        "layer \"hidden\" is 16 wide but 32 wide in",
    );
    // labels and predictions out of the UInt16 range
    for bad in [70_000i64, -1] {
        let mut w = Written::of(&test);
        let mut v: Vec<i64> = test.labels.iter().map(|&x| x as i64).collect();
        v[3] = bad;
        w.set("label", Arc::new(Int64Array::from(v)) as ArrayRef);
        case(
            w,
            &format!("column \"label\" holds {bad} in row 3, which is not a UInt16 value"),
        );
    }
    let mut w = Written::of(&test);
    let mut v: Vec<u32> = test.predicted.iter().map(|&x| x as u32).collect();
    v[5] = 70_000;
    w.set("predicted", Arc::new(UInt32Array::from(v)) as ArrayRef);
    case(
        w,
        "column \"predicted\" holds 70000 in row 5, which is not a UInt16 value",
    );
    // probabilities that are not
    let mut p = test.probs().unwrap().clone();
    p[[7, 0]] = -0.5;
    p[[7, 1]] += 0.5;
    case(
        Written::of(&with_layer(&test, "output", p)),
        "column \"output\" holds -0.5 in row 7: it must hold class probabilities in [0, 1]",
    );
    let p = test.probs().unwrap().mapv(|v| v * 0.5);
    case(
        Written::of(&with_layer(&test, "output", p)),
        "the probabilities of column \"output\" in row 0 sum to 0.500000, not 1",
    );
    // predicted is not the arg-max; a label that is not the split's
    let mut t = test.clone();
    t.predicted[2] = (t.predicted[2] + 1) % 10;
    case(Written::of(&t), "row 2 has predicted = ");
    let mut t = test.clone();
    t.labels[4] = (t.labels[4] + 1) % 10;
    case(Written::of(&t), "row 4 (id ");
    // core-set with a pool of another width
    Written::of(&test).write(&test_path);
    let c = l.iter("coreset", 1);
    for split in [Split::Train, Split::Test] {
        stand_in_activations(&l.split(split), &c.activations(split.as_str()));
    }
    let pool = Activations::read(&d.activations("pool")).unwrap();
    let narrow = pool
        .layer("hidden")
        .unwrap()
        .slice(ndarray::s![.., ..16])
        .to_owned();
    Written::of(&with_layer(&pool, "hidden", narrow)).write(&c.activations("pool"));
    refused(
        &run_stages(&root, "coreset", &stages),
        &format!(
            "{}: layer \"hidden\" is 16 wide but 32 wide in",
            c.activations("pool").display()
        ),
    );
    // Restored, the same batch as before.
    ok(run_stages(&root, "mode-dot", &stages));
    assert_eq!(std::fs::read(d.batch()).unwrap(), reference);
    let _ = train;
}

/// A seeded fuzz of user-written activations: column types, widths, values and metadata.
/// Every mutant ends in one clean error or, when the mutation keeps the meaning (a wider
/// integer type, extra metadata, an extra column), in the very same batch.
#[test]
fn fuzzed_user_activations_never_panic_nor_mislead() {
    use arrow::array::{ArrayRef, Float64Array, Int32Array, Int64Array, StringArray, UInt64Array};
    use mode::artifacts::Activations;
    use mode::artifacts::tensor::Col;
    use rand::{Rng, SeedableRng};
    use std::sync::Arc;
    let root = scratch("fuzz-activations");
    let sets = [
        set("split.train_limit", "600"),
        set("split.test_limit", "200"),
    ];
    ok(mode(&root, &args(&["split"], &sets)));
    let l = Layout::new(&root);
    let d = l.iter("mode-dot", 1);
    for split in [Split::Train, Split::Test] {
        stand_in_activations(&l.split(split), &d.activations(split.as_str()));
    }
    let originals: Vec<(String, Activations)> = ["train", "test"]
        .iter()
        .map(|s| (s.to_string(), Activations::read(&d.activations(s)).unwrap()))
        .collect();
    let run = |root: &Path| -> Output {
        let mut last = None;
        for stage in ["layers", "heatmap", "select"] {
            let mut a = vec![stage, "--arm", "mode-dot", "--iteration", "1"];
            for s in &sets {
                a.extend(s.iter().map(String::as_str));
            }
            let o = mode(root, &a);
            let failed = !o.status.success();
            last = Some(o);
            if failed {
                break;
            }
        }
        last.unwrap()
    };
    ok(run(&root));
    let reference = std::fs::read(d.batch()).unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(20);
    let (mut benign, mut harmful) = (0, 0);
    for round in 0..48 {
        let (split, a) = &originals[rng.random_range(0..2)];
        let path = d.activations(split);
        let n = a.len();
        let row = rng.random_range(0..n);
        let mut w = Written::of(a);
        let kind = rng.random_range(0..14);
        // (what was done, whether the meaning is kept)
        let (what, keeps) = match kind {
            0 => {
                let v: Vec<i64> = a.labels.iter().map(|&x| x as i64).collect();
                w.set("label", Arc::new(Int64Array::from(v)) as ArrayRef);
                ("labels as Int64", true)
            }
            1 => {
                let v: Vec<u64> = a.ids.iter().map(|&x| x as u64).collect();
                w.set("id", Arc::new(UInt64Array::from(v)) as ArrayRef);
                ("ids as UInt64", true)
            }
            2 => {
                w.meta.insert("framework".into(), "torch 2.9".into());
                w.cols.push(Col::str("note", vec!["x".into(); n]));
                ("extra metadata and column", true)
            }
            3 => {
                let mut v: Vec<i64> = a.labels.iter().map(|&x| x as i64).collect();
                v[row] = [70_000, -1, 65_536][rng.random_range(0..3)];
                w.set("label", Arc::new(Int64Array::from(v)) as ArrayRef);
                ("a label out of range", false)
            }
            4 => {
                let mut v: Vec<i32> = a.predicted.iter().map(|&x| x as i32).collect();
                v[row] = rng.random_range(10..100_000);
                w.set("predicted", Arc::new(Int32Array::from(v)) as ArrayRef);
                ("a prediction out of range", false)
            }
            5 => {
                let (layer, m) = &a.layers[rng.random_range(0..a.layers.len())];
                let cut = rng.random_range(1..m.ncols());
                let m = m.slice(ndarray::s![.., ..cut]).to_owned();
                w = Written::of(&with_layer(a, layer, m));
                ("a layer narrower", false)
            }
            6 => {
                let mut p = a.probs().unwrap().clone();
                p[[row, rng.random_range(0..10)]] =
                    [-0.2f32, 1.5, f32::NAN][rng.random_range(0..3)];
                w = Written::of(&with_layer(a, "output", p));
                ("a bad probability", false)
            }
            7 => {
                let mut t = a.clone();
                t.predicted[row] = (t.predicted[row] + rng.random_range(1..10)) % 10;
                w = Written::of(&t);
                ("a prediction that is not the arg-max", false)
            }
            8 => {
                let mut t = a.clone();
                t.labels[row] = (t.labels[row] + rng.random_range(1..10)) % 10;
                w = Written::of(&t);
                ("a label that is not the split's", false)
            }
            9 => {
                let mut t = a.clone();
                t.ids.swap(row, (row + 1) % n);
                w = Written::of(&t);
                ("rows out of order", false)
            }
            10 => {
                let choice = rng.random_range(0..4);
                match choice {
                    0 => {
                        w.meta.clear();
                    }
                    1 => {
                        w.meta.insert("mode.layers".into(), "output,hidden".into());
                    }
                    2 => {
                        w.meta
                            .insert("mode.layers".into(), "hidden,nope,output".into());
                    }
                    _ => {
                        w.meta.insert("mode.layers".into(), "output".into());
                    }
                }
                ("bad layer metadata", false)
            }
            11 => {
                let mut h = a.layer("hidden").unwrap().clone();
                h[[row, 0]] = f32::INFINITY;
                w = Written::of(&with_layer(a, "hidden", h));
                ("a non-finite activation", false)
            }
            12 => {
                let v: Vec<f64> = a.labels.iter().map(|&x| x as f64 + 0.5).collect();
                w.set("label", Arc::new(Float64Array::from(v)) as ArrayRef);
                ("labels as fractional floats", false)
            }
            _ => {
                let v: Vec<String> = a.ids.iter().map(|x| x.to_string()).collect();
                w.set("id", Arc::new(StringArray::from(v)) as ArrayRef);
                ("ids as text", false)
            }
        };
        w.write(&path);
        let o = run(&root);
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert_ne!(
            o.status.code(),
            Some(101),
            "round {round} ({what}, {split}): a panic: {err}"
        );
        assert!(!err.contains("panicked"), "round {round} ({what}): {err}");
        if keeps {
            assert!(
                o.status.success(),
                "round {round} ({what}, {split}) must pass: {err}"
            );
            assert_eq!(
                std::fs::read(d.batch()).unwrap(),
                reference,
                "round {round} ({what}): the same batch"
            );
            benign += 1;
        } else {
            assert_eq!(
                o.status.code(),
                Some(1),
                "round {round} ({what}, {split}) must be refused: {err}"
            );
            let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
            assert_eq!(lines.len(), 1, "round {round}: {err}");
            assert!(
                lines[0].contains(&format!("{split}.parquet")),
                "round {round} ({what}): names the file: {err}"
            );
            harmful += 1;
        }
        a.write(&path).unwrap();
    }
    assert!(
        benign >= 5 && harmful >= 30,
        "{benign} kept, {harmful} refused"
    );
}

/// Data and models a user brings that cannot be debugged: one error each, nothing written.
#[test]
fn data_that_cannot_be_debugged_is_refused() {
    let t = scratch("undebuggable");
    // one class folder
    let images = t.join("one-class");
    gray_folder(&images, 4);
    for c in ["dog", "eel"] {
        std::fs::remove_dir_all(images.join(c)).unwrap();
    }
    let root = t.join("one-class-root");
    fails(
        mode(
            &root,
            &args(&["split"], &[set("data.images", images.to_str().unwrap())]),
        ),
        "one class folder (\"cat\"); a classifier needs at least two classes",
        &root,
    );
    // a dangling link and a link loop are named, not skipped
    let dangling = |d: &Path| {
        std::os::unix::fs::symlink(d.join("nowhere.png"), d.join("dog/gone.png")).unwrap()
    };
    let looping = |d: &Path| {
        std::os::unix::fs::symlink(d.join("eel/b.png"), d.join("eel/a.png")).unwrap();
        std::os::unix::fs::symlink(d.join("eel/a.png"), d.join("eel/b.png")).unwrap();
    };
    type Make<'a> = &'a dyn Fn(&Path);
    let cases: [(&str, Make); 2] = [("dangling", &dangling), ("loop", &looping)];
    for (name, make) in cases {
        let images = t.join(name);
        gray_folder(&images, 4);
        make(&images);
        let root = t.join(format!("{name}-root"));
        fails(
            mode(
                &root,
                &args(&["split"], &[set("data.images", images.to_str().unwrap())]),
            ),
            "a dangling or looping symbolic link?",
            &root,
        );
    }
    // table pixels outside 0–255 (integers) or [0, 1] (floats)
    use polars::prelude::*;
    for (kind, values, needle) in [
        (
            "int",
            vec![300.0f64, 10.0],
            "holds 300, which is 1.1764706 after scaling by 0.003921569: pixels must end in [0, 1] (integer pixels are 0–255",
        ),
        (
            "neg",
            vec![-40.0, 10.0],
            "holds -40, which is -0.15686275 after scaling",
        ),
        (
            "float",
            vec![2.0, 5.0],
            "holds 2, which is 2 after scaling by 1: pixels must end in [0, 1] (float pixels are taken as they are",
        ),
    ] {
        let n = 20usize;
        let rows: Vec<Series> = (0..n)
            .map(|i| {
                let v: Vec<f64> = (0..4)
                    .map(|j| {
                        if i == 3 && j == 1 {
                            values[0]
                        } else {
                            values[1] / if kind == "float" { 10.0 } else { 1.0 }
                        }
                    })
                    .collect();
                if kind == "float" {
                    Series::new("".into(), v)
                } else {
                    Series::new("".into(), v.iter().map(|&x| x as i32).collect::<Vec<i32>>())
                }
            })
            .collect();
        let labels: Vec<u32> = (0..n as u32).map(|i| i % 2).collect();
        let mut df = DataFrame::new(
            n,
            vec![
                Column::new("label".into(), labels),
                Column::new("pixels".into(), rows),
            ],
        )
        .unwrap();
        let file = t.join(format!("{kind}.parquet"));
        ParquetWriter::new(std::fs::File::create(&file).unwrap())
            .finish(&mut df)
            .unwrap();
        let root = t.join(format!("{kind}-root"));
        fails(
            mode(
                &root,
                &args(&["split"], &[set("data.table", file.to_str().unwrap())]),
            ),
            &format!("column \"pixels\": row 3 {needle}"),
            &root,
        );
    }
}

/// `mode debug --iteration 2` after the data were split again refuses to continue from the
/// old iteration's pool.
#[test]
fn debug_refuses_a_pool_of_other_splits() {
    let root = scratch("debug-resplit");
    ok(mode(&root, &["split"]));
    let mlp = fixture("mlp.onnx");
    ok(mode(&root, &["debug", "--onnx", &mlp, "--iteration", "1"]));
    ok(mode(&root, &["--set", "split.seed=8", "split"]));
    let l = Layout::new(&root);
    let o = mode(
        &root,
        &[
            "--set",
            "split.seed=8",
            "debug",
            "--onnx",
            &mlp,
            "--iteration",
            "2",
        ],
    );
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("{}: id ", l.iter("mode-dot", 1).pool().display()))
            && err.contains("the data were split again since iteration 1; start again with `mode debug --iteration 1`"),
        "{err}"
    );
    assert!(!l.iter("mode-dot", 2).path().exists());
}

/// An ONNX model with two outputs says so, naming them.
#[test]
fn an_onnx_model_with_two_outputs_is_refused() {
    use prost::Message;
    use tract_onnx::pb::ModelProto;
    let bytes = std::fs::read(fixture("mlp.onnx")).unwrap();
    let mut model = ModelProto::decode(bytes.as_slice()).unwrap();
    let graph = model.graph.as_mut().unwrap();
    let hidden = graph
        .node
        .iter()
        .find(|n| n.op_type == "Relu")
        .unwrap()
        .output[0]
        .clone();
    let mut extra = graph.output[0].clone();
    extra.name = hidden.clone();
    extra.r#type = None;
    graph.output.push(extra);
    let t = scratch("two-outputs");
    let file = t.join("two.onnx");
    std::fs::write(&file, model.encode_to_vec()).unwrap();
    let root = t.join("root");
    ok(mode(&root, &["split"]));
    let o = mode(
        &root,
        &[
            "debug",
            "--onnx",
            file.to_str().unwrap(),
            "--iteration",
            "1",
        ],
    );
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(1), "{err}");
    let out = &model.graph.as_ref().unwrap().output[0].name;
    assert!(
        err.contains(&format!(
            "the model declares 2 outputs ({out:?}, {hidden:?}); mode needs exactly one"
        )),
        "{err}"
    );
}

/// A generated image folder: `classes` classes of `n` images each; class c is a bright square
/// at its own place (and, in colour, its own tint) with noise; every `odd`-th image of a class
/// is `big` × `big` instead of `size` × `size` (so the split resizes).
fn pattern_folder(
    dir: &Path,
    classes: usize,
    n: usize,
    rgb: bool,
    (size, big, odd): (u32, u32, usize),
    seed: u64,
) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    for c in 0..classes {
        let class = dir.join(format!("class-{c}"));
        std::fs::create_dir_all(&class).unwrap();
        for i in 0..n {
            let s = if odd > 0 && i % odd == 0 { big } else { size };
            let (r0, c0) = ((c as u32 * 2 + 1) % (s - 4), (c as u32 * 2 + 2) % (s - 4));
            let mut px = |x: u32, y: u32, ch: usize| -> u8 {
                let inside = (r0..r0 + 4).contains(&y) && (c0..c0 + 4).contains(&x);
                let tint = if rgb {
                    [1.0, 0.3 + 0.2 * (c % 3) as f32, 1.0 - 0.15 * c as f32][ch]
                } else {
                    1.0
                };
                let v = if inside { 0.5 * tint } else { 0.0 } + rng.random::<f32>() * 0.5;
                (v.min(1.0) * 255.0) as u8
            };
            let file = class.join(format!("{i:03}.png"));
            if rgb {
                let mut img = RgbImage::new(s, s);
                for y in 0..s {
                    for x in 0..s {
                        img.put_pixel(x, y, Rgb([px(x, y, 0), px(x, y, 1), px(x, y, 2)]));
                    }
                }
                img.save(file).unwrap();
            } else {
                let mut img = GrayImage::new(s, s);
                for y in 0..s {
                    for x in 0..s {
                        img.put_pixel(x, y, Luma([px(x, y, 0)]));
                    }
                }
                img.save(file).unwrap();
            }
        }
    }
}

/// A user's own small data that is not MNIST, and an ONNX model trained on few examples of one
/// class: with the documented defaults (a pipeline naming only the data), `mode debug`
/// diagnoses that class and targets it.
#[test]
fn the_defaults_find_the_weak_class_of_a_users_data() {
    use mode::artifacts::DiagnosisRow;
    use mode::config::Pipeline;
    // (classes, images per class, RGB, (size, other size, every n-th), weak class)
    let cases = [
        (3usize, 60usize, true, (12u32, 12u32, 0usize), 1u16),
        (5, 50, false, (16, 20, 3), 3),
        (4, 60, true, (10, 14, 4), 0),
    ];
    for (case, &(classes, n, rgb, sizes, weak)) in cases.iter().enumerate() {
        let t = scratch(&format!("weak-{case}"));
        let images = t.join("images");
        pattern_folder(&images, classes, n, rgb, sizes, case as u64);
        let file = t.join("mine.toml");
        let resize = if sizes.1 != sizes.0 {
            format!("height = {}\nwidth = {}\n", sizes.0, sizes.0)
        } else {
            String::new()
        };
        std::fs::write(
            &file,
            format!(
                "name = \"mine\"\n\n[data]\ndataset = \"shapes\"\nimages = \"{}\"\n{resize}",
                images.display()
            ),
        )
        .unwrap();
        let root = t.join("root");
        let run = |args: &[&str]| {
            Command::new(env!("CARGO_BIN_EXE_mode"))
                .current_dir(repo())
                .arg("--pipeline")
                .arg(&file)
                .arg("--root")
                .arg(&root)
                .args(args)
                .output()
                .unwrap()
        };
        ok(run(&["split"]));
        let l = Layout::new(&root);
        let train = Samples::read(&l.split(Split::Train)).unwrap();
        assert_eq!(train.meta.channels, if rgb { 3 } else { 1 });
        // The user's model: trained on every class but 3 images of the weak one.
        let p = Pipeline::load(Some(&file), &[]).unwrap();
        let mut seen = 0;
        let keep: Vec<usize> = (0..train.len())
            .filter(|&i| {
                if train.labels[i] != weak {
                    return true;
                }
                seen += 1;
                seen <= 1
            })
            .collect();
        let part = train.take(&keep);
        let mut cfg = p.train.clone();
        cfg.epochs = 30;
        cfg.learning_rate = 0.005;
        let net = mode::model::Net::init(&p, &train.meta).unwrap();
        let (net, _, _) =
            mode::model::fit(job(net, &part.pixels, &part.labels, cfg), |_, _| {}).unwrap();
        let onnx = t.join("model_1.onnx");
        std::fs::write(&onnx, crate::common::onnx::mlp(&net)).unwrap();
        let o = run(&[
            "debug",
            "--onnx",
            onnx.to_str().unwrap(),
            "--iteration",
            "1",
        ]);
        ok(o);
        let d = l.iter("mode-dot", 1);
        let diagnosis = Vec::<DiagnosisRow>::read(&d.diagnosis()).unwrap();
        let faultiest: Vec<u16> = diagnosis
            .iter()
            .filter(|r| r.faultiest)
            .map(|r| r.label)
            .collect();
        let table: Vec<(u16, f64, f64, String)> = diagnosis
            .iter()
            .map(|r| (r.label, r.model_acc, r.test_acc, r.layer.clone()))
            .collect();
        assert_eq!(
            faultiest,
            [weak],
            "case {case}: the weak class is diagnosed: {table:?}"
        );
        let batch = BatchCsv::read(&d.batch_csv()).unwrap().0;
        assert!(
            batch
                .iter()
                .filter(|r| r.origin == Origin::Targeted)
                .all(|r| r.label == weak)
        );
        assert!(
            !batch.is_empty() && batch.len() < train.len(),
            "a batch that fits the pool"
        );
    }
}

/// The checks before a diagnosis is trusted fire where they should: each a warning in the log
/// and a flag in `diagnosis.parquet` / `layers.parquet`.
#[test]
fn the_diagnosis_checks_fire_where_they_should() {
    use mode::artifacts::DiagnosisRow;
    use mode::config::Pipeline;
    let t = scratch("checks");
    let images = t.join("images");
    pattern_folder(&images, 3, 60, false, (12, 12, 0), 9);
    let file = t.join("mine.toml");
    std::fs::write(
        &file,
        format!(
            "name = \"mine\"\n[data]\nimages = \"{}\"\n",
            images.display()
        ),
    )
    .unwrap();
    let root = t.join("root");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_mode"))
            .current_dir(repo())
            .arg("--pipeline")
            .arg(&file)
            .arg("--root")
            .arg(&root)
            .args(args)
            .output()
            .unwrap()
    };
    ok(run(&["split"]));
    let l = Layout::new(&root);
    let train = Samples::read(&l.split(Split::Train)).unwrap();
    let pool = Samples::read(&l.split(Split::Pool)).unwrap();
    let p = Pipeline::load(Some(&file), &[]).unwrap();
    let net = mode::model::Net::init(&p, &train.meta).unwrap();
    let mut cfg = p.train.clone();
    (cfg.epochs, cfg.learning_rate) = (30, 0.005);
    let (net, _, _) =
        mode::model::fit(job(net, &train.pixels, &train.labels, cfg), |_, _| {}).unwrap();
    let onnx = t.join("model.onnx");
    std::fs::write(&onnx, crate::common::onnx::mlp(&net)).unwrap();
    let debug = |sets: &[&str]| {
        let mut a: Vec<&str> = Vec::new();
        for s in sets {
            a.extend(["--set", s]);
        }
        a.extend([
            "debug",
            "--onnx",
            onnx.to_str().unwrap(),
            "--iteration",
            "1",
        ]);
        let o = run(&a);
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(o.status.success(), "{err}");
        let d = Vec::<DiagnosisRow>::read(&l.iter("mode-dot", 1).diagnosis()).unwrap();
        (d, err)
    };
    // Nothing fires with the defaults.
    let (d, err) = debug(&[]);
    assert!(!err.contains("WARN"), "{err}");
    assert!(
        d.iter()
            .all(|r| !r.theta_above_all && !r.batch_exceeds_pool && !r.few_candidates)
    );
    assert!(
        d.iter()
            .all(|r| r.decided_by == mode::vocab::Decider::Model && r.layer == "output")
    );
    let layers = Vec::<LayerRow>::read(&l.iter("mode-dot", 1).layers()).unwrap();
    let grid = &p.layers.l2_grid;
    assert!(
        layers
            .iter()
            .filter(|r| r.layer != "output")
            .all(|r| r.l2.is_some_and(|v| grid.contains(&v))),
        "the chosen L2 strengths are recorded: {layers:?}"
    );
    // θ above every label; a batch larger than the pool, and a targeted share larger than
    // every label's candidates.
    let batch = format!("mode.batch={}", 4 * pool.len() + 10);
    let (d, err) = debug(&["mode.theta={ relative = 1.5 }", &batch]);
    assert!(
        d.iter().all(|r| r.theta_above_all && r.batch_exceeds_pool),
        "{d:?}"
    );
    assert!(
        d.iter().filter(|r| r.faultiest).all(|r| r.few_candidates),
        "{d:?}"
    );
    for needle in [
        "is above every label's accuracy, so every label underfits",
        &format!("is larger than the pool left ({})", pool.len()),
        "samples left in the pool but the targeted share is",
    ] {
        assert!(err.contains(needle), "{needle:?} not in {err}");
    }
    // An explicit L2 is used as it is.
    debug(&["layers.l2=3.5"]);
    let layers = Vec::<LayerRow>::read(&l.iter("mode-dot", 1).layers()).unwrap();
    assert!(
        layers
            .iter()
            .filter(|r| r.layer != "output")
            .all(|r| r.l2 == Some(3.5)),
        "{layers:?}"
    );
    // The seed's diagnosis by the target layer's feature model, and one that is not trusted:
    // with the model's own decision as the fallback.
    let (d, _) = debug(&[
        "mode.diagnosis=\"target_layer\"",
        "layers.force_target=\"input\"",
        "layers.max_gap=0.0",
    ]);
    let layers = Vec::<LayerRow>::read(&l.iter("mode-dot", 1).layers()).unwrap();
    let target = layers
        .iter()
        .find(|r| r.is_target && r.direction == mode::vocab::Direction::Forward)
        .unwrap();
    if target.below_model {
        assert!(
            d.iter()
                .all(|r| r.layer == "output" && r.decided_by == mode::vocab::Decider::Model)
        );
    } else {
        assert!(
            d.iter()
                .all(|r| r.layer == "input" && r.decided_by == mode::vocab::Decider::FeatureModel)
        );
    }
    let (d, _) = debug(&[
        "mode.diagnosis=\"target_layer\"",
        "layers.force_target=\"input\"",
        "layers.untrusted=\"keep\"",
    ]);
    assert!(
        d.iter()
            .all(|r| r.layer == "input" && r.decided_by == mode::vocab::Decider::FeatureModel)
    );
}

/// The README's own-data walk-through, run as written: a folder of images, an ONNX model, the
/// pipeline file it writes, `split`, `debug`, `report`.
#[test]
fn the_readme_walk_through_runs_as_written() {
    use mode::config::Pipeline;
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let start = readme
        .find("this runs as written")
        .expect("the walk-through");
    let block = &readme[start..];
    let from = block.find("```sh\n").unwrap() + 6;
    let script = &block[from..from + block[from..].find("```").unwrap()];
    let t = scratch("readme");
    // The project's pipelines, the user's images and model.
    std::fs::create_dir_all(t.join("pipelines")).unwrap();
    for e in std::fs::read_dir(repo().join("pipelines"))
        .unwrap()
        .flatten()
    {
        std::fs::copy(e.path(), t.join("pipelines").join(e.file_name())).unwrap();
    }
    pattern_folder(&t.join("data/photos"), 3, 40, false, (12, 12, 0), 4);
    let probe = t.join("probe-root");
    let o = Command::new(env!("CARGO_BIN_EXE_mode"))
        .current_dir(&t)
        .args([
            "-p",
            "own",
            "--set",
            "data.images=\"data/photos\"",
            "--root",
        ])
        .arg(&probe)
        .arg("split")
        .output()
        .unwrap();
    ok(o);
    let train = Samples::read(&Layout::new(&probe).split(Split::Train)).unwrap();
    let p = Pipeline::load(Some(&t.join("pipelines/own.toml")), &[]).unwrap();
    let net = mode::model::Net::init(&p, &train.meta).unwrap();
    let (net, _, _) = mode::model::fit(
        job(net, &train.pixels, &train.labels, p.train.clone()),
        |_, _| {},
    )
    .unwrap();
    std::fs::write(t.join("model_1.onnx"), crate::common::onnx::mlp(&net)).unwrap();
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_mode"));
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let o = Command::new("bash")
        .current_dir(&t)
        .env("PATH", path)
        .args(["-e", "-c", script])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{script}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let out = t.join("output/mine");
    assert!(out.join("runs/mode-dot/iter-1/batch.csv").exists());
    assert!(out.join("report/index.html").exists());
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(
        log.contains("Verdict:"),
        "debug prints the diagnosis: {log}"
    );
}

/// A training job from seed 1 and fresh optimizer state.
fn job<'a>(
    net: mode::model::Net,
    x: &'a ndarray::Array2<f32>,
    y: &'a [u16],
    cfg: mode::config::TrainConfig,
) -> mode::model::Job<'a> {
    mode::model::Job {
        net,
        x,
        y,
        cfg,
        seed: 1,
        state: None,
    }
}
