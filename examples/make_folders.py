#!/usr/bin/env python3
"""Write a small image-folder dataset with a known weak class, from the Fashion-MNIST idx files
Debian installs (or MNIST's): data/folders/<class name>/<n>.png, RGB, 32 × 32.

Five classes; the weak one ("shirt", confused with t-shirts, pullovers and coats) gets a tenth of
the images of the others, so a model trained on the folder learns it badly and MODE's diagnosis
should name it. Each image is the 28 × 28 original upscaled to 32 × 32 and tinted with a seeded
colour, so the folder is not MNIST-shaped (other size, three channels). Deterministic: same
arguments, same bytes.

    python3 examples/make_folders.py [--idx-dir /usr/share/datasets/fashion-mnist] [--out data/folders]
"""
import argparse, gzip, os, random, struct, zlib

CLASSES = {0: "t-shirt", 2: "pullover", 4: "coat", 6: "shirt", 7: "sneaker"}
WEAK = 6


def idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = struct.unpack(">" + "I" * dims, data[4 : 4 + 4 * dims])
    return shape, data[4 + 4 * dims :]


def png(path, width, height, rgb):
    rows = b"".join(b"\x00" + rgb[y * width * 3 : (y + 1) * width * 3] for y in range(height))

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)))
        f.write(chunk(b"IDAT", zlib.compress(rows, 9)))
        f.write(chunk(b"IEND", b""))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--idx-dir", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--out", default="data/folders")
    ap.add_argument("--per-class", type=int, default=600)
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    (n, h, w), pixels = idx(os.path.join(a.idx_dir, "train-images-idx3-ubyte.gz"))
    _, labels = idx(os.path.join(a.idx_dir, "train-labels-idx1-ubyte.gz"))
    rng = random.Random(a.seed)
    size = 32
    want = {c: (a.per_class // 10 if c == WEAK else a.per_class) for c in CLASSES}
    counts = {c: 0 for c in CLASSES}
    for name in CLASSES.values():
        os.makedirs(os.path.join(a.out, name), exist_ok=True)
    for i in range(n):
        c = labels[i]
        if c not in CLASSES or counts[c] >= want[c]:
            continue
        img = pixels[i * h * w : (i + 1) * h * w]
        tint = [rng.uniform(0.5, 1.0) for _ in range(3)]
        out = bytearray()
        for y in range(size):
            for x in range(size):
                v = img[(y * h // size) * w + x * w // size]
                out += bytes(int(v * t) for t in tint)
        png(os.path.join(a.out, CLASSES[c], f"{counts[c]:04}.png"), size, size, bytes(out))
        counts[c] += 1
        if counts == want:
            break
    print(f"{a.out}: " + ", ".join(f"{CLASSES[c]} {counts[c]}" for c in CLASSES))


if __name__ == "__main__":
    main()
