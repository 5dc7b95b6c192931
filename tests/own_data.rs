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
            .map(|r| mode::artifacts::argmax(r.iter().copied()) as u16)
            .collect(),
        layers: vec![("hidden".into(), hidden), ("output".into(), probs)],
        info: Default::default(),
    }
    .write(out)
    .unwrap();
}
