"""Write the bundled Fashion-MNIST demo subset into data/ as gzip IDX files.

Makes (MNIST IDX format, gzip with mtime=0 so the output is byte-reproducible):
    data/fashion-mnist-train-images.idx3-ubyte.gz  first 10,000 train images
    data/fashion-mnist-train-labels.idx1-ubyte.gz  their labels
    data/fashion-mnist-test-images.idx3-ubyte.gz   first 2,000 test images
    data/fashion-mnist-test-labels.idx1-ubyte.gz   their labels

Rerun (from the repo root):
    apt-get install dataset-fashion-mnist
    /usr/bin/python3 tools/make_demo_data.py
"""
import gzip
import os
import struct

SRC = "/usr/share/datasets/fashion-mnist"
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data")
IMAGES_MAGIC = 0x00000803  # uint8, 3 dims
LABELS_MAGIC = 0x00000801  # uint8, 1 dim


def read_idx(name, magic):
    with gzip.open(os.path.join(SRC, name), "rb") as f:
        raw = f.read()
    got = struct.unpack(">I", raw[:4])[0]
    if got != magic:
        raise ValueError(f"{name}: magic {got:#010x}, expected {magic:#010x}")
    ndim = magic & 0xFF
    dims = list(struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim]))
    return dims, raw[4 + 4 * ndim:]


def write_idx(name, magic, dims, body):
    header = struct.pack(f">I{len(dims)}I", magic, *dims)
    path = os.path.join(OUT, name)
    with open(path, "wb") as f:
        with gzip.GzipFile(filename="", mode="wb", fileobj=f,
                           compresslevel=9, mtime=0) as gz:
            gz.write(header + body)
    print(f"{name}: {dims} {os.path.getsize(path)} bytes")


def subset(split, count):
    dims, body = read_idx(f"{split}-images-idx3-ubyte.gz", IMAGES_MAGIC)
    assert dims[0] >= count and dims[1:] == [28, 28]
    images = body[:count * 28 * 28]
    ldims, lbody = read_idx(f"{split}-labels-idx1-ubyte.gz", LABELS_MAGIC)
    assert ldims[0] == dims[0]
    return images, lbody[:count]


def main():
    os.makedirs(OUT, exist_ok=True)
    for src_split, dst_split, count in (("train", "train", 10000),
                                        ("t10k", "test", 2000)):
        images, labels = subset(src_split, count)
        write_idx(f"fashion-mnist-{dst_split}-images.idx3-ubyte.gz",
                  IMAGES_MAGIC, [count, 28, 28], images)
        write_idx(f"fashion-mnist-{dst_split}-labels.idx1-ubyte.gz",
                  LABELS_MAGIC, [count], labels)


if __name__ == "__main__":
    main()
