#!/usr/bin/env python3
"""OpenCV's classical pipeline on the images `cargo bench --bench opencv -- --write DIR` wrote,
timed per image on one thread with decoding included, beside spheroseg's times for the same images
(the CSV of `--time DIR`). Prints a table per image size and depth, then one per image with the
quality of both against the truth labels, scored as `spheroseg::synth::Score` does: an object
belongs to the truth spheroid holding at least half of its pixels, a spheroid is matched when
exactly one object belongs to it, an object belonging to none is extra.

Usage: compare.py DIR SPHEROSEG_CSV
Environment: SPHEROSEG_BENCH_REPEATS (default 5) runs per image; the median is reported.
"""

import csv
import os
import statistics
import sys
import time

import cv2
import numpy as np


def opencv_pipeline(path):
    """imread, Gaussian blur, Otsu, open and close, connected components (small ones dropped),
    findContours, approxPolyDP: the classical pipeline with spheroseg's default scales."""
    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if img.dtype != np.uint8:
        # Otsu wants 8 bits: stretch the 16-bit range.
        img = cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX, dtype=cv2.CV_8U)
    long = max(img.shape[:2])
    sigma = max(long / 1024.0, 1.0)
    blurred = cv2.GaussianBlur(img, (0, 0), sigma)
    # Spheroids are darker than the field.
    _, mask = cv2.threshold(blurred, 0, 255, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
    r = max(round(long / 1024.0), 1)
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, disc)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, disc)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    keep = np.zeros(n, np.uint8)
    keep[1:][stats[1:, cv2.CC_STAT_AREA] >= 0.002 * img.shape[0] * img.shape[1]] = 255
    mask = keep[labels]
    contours, hierarchy = cv2.findContours(mask, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
    polygons = [cv2.approxPolyDP(c, 1.0, True) for c in contours]
    return polygons, hierarchy, img.shape[:2]


def objects_of(polygons, hierarchy, shape):
    """One filled mask per outer contour, its holes cut out."""
    out = []
    if hierarchy is None:
        return out
    h = hierarchy[0]
    for i in range(len(polygons)):
        if h[i][3] != -1:
            continue
        m = np.zeros(shape, np.uint8)
        cv2.drawContours(m, polygons, i, 1, cv2.FILLED)
        child = h[i][2]
        while child != -1:
            cv2.drawContours(m, polygons, child, 0, cv2.FILLED)
            child = h[child][0]
        out.append(m.astype(bool))
    return out


def score(masks, labels, n):
    """(found, matched once, extra, min IoU) against the truth labels."""
    truth_area = np.bincount(labels.ravel(), minlength=n + 1)
    owners, best = [], np.zeros(n + 1)
    for m in masks:
        inter = np.bincount(labels[m], minlength=n + 1)
        area = m.sum()
        t = int(np.argmax(inter[1:])) + 1 if n else 0
        owners.append(t if n and area and 2 * inter[t] >= area else None)
        for t in range(1, n + 1):
            union = truth_area[t] + area - inter[t]
            if union:
                best[t] = max(best[t], inter[t] / union)
    matched = sum(1 for t in range(1, n + 1) if owners.count(t) == 1)
    extra = sum(1 for o in owners if o is None)
    return len(masks), matched, extra, min(best[1:]) if n else 1.0


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    cv2.setNumThreads(1)
    directory, ours_csv = sys.argv[1], sys.argv[2]
    repeats = max(int(os.environ.get("SPHEROSEG_BENCH_REPEATS", "5")), 1)
    with open(ours_csv) as f:
        ours = {row["file"]: row for row in csv.DictReader(f)}
    with open(os.path.join(directory, "images.csv")) as f:
        images = list(csv.DictReader(f))

    rows = []
    for image in images:
        path = os.path.join(directory, image["file"])
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            result = opencv_pipeline(path)
            times.append((time.perf_counter() - start) * 1e3)
        labels = cv2.imread(os.path.join(directory, image["labels"]), cv2.IMREAD_UNCHANGED)
        n = int(image["truth"])
        found, matched, extra, min_iou = score(objects_of(*result), labels.astype(np.int64), n)
        rows.append((image, statistics.median(times), (found, matched, extra, min_iou)))

    groups = {}
    for image, cv_ms, _ in rows:
        key = (int(image["size"]), int(image["depth"]))
        groups.setdefault(key, []).append((cv_ms, float(ours[image["file"]]["median_ms"])))
    print(f"OpenCV {cv2.__version__}, numpy {np.__version__}; one thread each; decode included;")
    print(f"median over the images of each image's median of {repeats} runs\n")
    print(f"{'image':<22} {'images':>6} {'OpenCV ms':>10} {'spheroseg ms':>13} {'ratio':>7}")
    for (size, depth), pairs in sorted(groups.items()):
        cv_ms = statistics.median(p[0] for p in pairs)
        our_ms = statistics.median(p[1] for p in pairs)
        fmt = "PNG" if depth == 8 else "TIFF"
        label = f"{size}² {depth}-bit {fmt}"
        print(f"{label:<22} {len(pairs):>6} {cv_ms:>10.1f} {our_ms:>13.1f} {our_ms / cv_ms:>7.2f}")
    print("\n(ratio: spheroseg / OpenCV)\n")

    print(
        f"{'image':<34} {'OpenCV ms':>9} {'ours ms':>8}   "
        f"{'OpenCV found matched extra minIoU':>34}   {'spheroseg found matched extra minIoU':>37}"
    )
    for image, cv_ms, (found, matched, extra, min_iou) in rows:
        o = ours[image["file"]]
        n = image["truth"]
        print(
            f"{image['file']:<34} {cv_ms:>9.1f} {float(o['median_ms']):>8.1f}   "
            f"{found:>10}/{n} {matched:>5}/{n} {extra:>5} {min_iou:>7.4f}   "
            f"{o['found']:>13}/{n} {o['matched']:>5}/{n} {o['extra']:>5} {float(o['min_iou']):>7.4f}"
        )
    print("\nspheroseg's stages (ms, last run of each image):")
    for image, _, _ in rows:
        print(f"  {image['file']}: {ours[image['file']]['stages']}")


if __name__ == "__main__":
    main()
