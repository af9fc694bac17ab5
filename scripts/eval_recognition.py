#!/usr/bin/env python3
"""Recognition evaluation: builds a gallery of real photos from registry packages and queries
with a fixed seed, and scores what `rvc-recognition-eval` answered.

  eval_recognition.py build --wheels var/eval/wheels --out var/eval/data [--seed 13] [--small]
  eval_recognition.py score --data var/eval/data --results var/eval/results.jsonl [--min-score S]

Gallery ("products"): photos shipped inside PyPI wheels (scikit-image, scikit-learn,
matplotlib, imgaug, PyWavelets). Large photos are split into 2 or 4 distinct parts, each its own
product (sibling products from one photo are hard negatives for each other). Photos never in
the gallery (textures, moon, cells, a clock, faces) are the distractors and scene backgrounds.

Query kinds per product: occlusion 25 % / 40 %, gamma 2.5 (dark), over-exposure, blur,
rotation +-20 deg, 70 % crop, JPEG q20, colour cast, a real second view (stereo pair) where one
exists. Scenes: 2-4 products at 40 % (scene40) or 30-60 % (scene) of the frame's short side on a
distractor background, partly overlapping. Distractors: single distractor photos (distorted)
and scenes made of distractor objects only.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import random
import sys
import zipfile

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

# (product sku prefix, wheel glob prefix, member path, split grid (cols, rows) or None)
PRODUCT_SOURCES = [
    ("chelsea", "scikit_image", "skimage/data/chelsea.png", None),
    ("coins", "scikit_image", "skimage/data/coins.png", None),
    ("color", "scikit_image", "skimage/data/color.png", None),
    ("horse", "scikit_image", "skimage/data/horse.png", None),
    ("logo", "scikit_image", "skimage/data/logo.png", None),
    ("page", "scikit_image", "skimage/data/page.png", None),
    ("text", "scikit_image", "skimage/data/text.png", None),
    ("rocket", "scikit_image", "skimage/data/rocket.jpg", None),
    ("hopper", "matplotlib", "matplotlib/mpl-data/sample_data/grace_hopper.jpg", None),
    ("present", "matplotlib", "matplotlib/mpl-data/sample_data/Minduka_Present_Blue_Pack.png", None),
    ("mpllogo", "matplotlib", "matplotlib/mpl-data/sample_data/logo2.png", None),
    ("quokka", "imgaug", "imgaug/quokka.jpg", None),
    ("astronaut", "scikit_image", "skimage/data/astronaut.png", (2, 2)),
    ("camera", "scikit_image", "skimage/data/camera.png", (2, 2)),
    ("coffee", "scikit_image", "skimage/data/coffee.png", (2, 1)),
    ("china", "scikit_learn", "sklearn/datasets/images/china.jpg", (2, 2)),
    ("flower", "scikit_learn", "sklearn/datasets/images/flower.jpg", (2, 2)),
    ("motorcycle", "scikit_image", "skimage/data/motorcycle_left.png", (2, 2)),
    ("hubble", "scikit_image", "skimage/data/hubble_deep_field.jpg", (2, 2)),
    ("retina", "scikit_image", "skimage/data/retina.jpg", (2, 1)),
    ("ihc", "scikit_image", "skimage/data/ihc.png", (2, 1)),
    ("aero", "pywavelets", "pywt/data/aero.npz", (2, 2)),
    ("ascent", "pywavelets", "pywt/data/ascent.npz", (2, 2)),
]
SECOND_VIEWS = {"motorcycle": ("scikit_image", "skimage/data/motorcycle_right.png")}
DISTRACTOR_SOURCES = [
    ("scikit_image", "skimage/data/grass.png"),
    ("scikit_image", "skimage/data/gravel.png"),
    ("scikit_image", "skimage/data/brick.png"),
    ("scikit_image", "skimage/data/moon.png"),
    ("scikit_image", "skimage/data/cell.png"),
    ("scikit_image", "skimage/data/clock_motion.png"),
    ("scikit_image", "skimage/data/lfw_subset.npy"),
]
KINDS = ["occl25", "occl40", "dark", "overexp", "blur", "rot20", "crop70", "jpeg20", "cast"]
FRAME = (1024, 768)


def wheel(wheels, prefix):
    for f in sorted(os.listdir(wheels)):
        if f.lower().startswith(prefix.lower()) and f.endswith(".whl"):
            return zipfile.ZipFile(os.path.join(wheels, f))
    sys.exit(f"no {prefix} wheel in {wheels}: run scripts/setup-eval.sh")


def load(wheels, prefix, member):
    data = wheel(wheels, prefix).read(member)
    if member.endswith(".npz"):
        arr = np.load(io.BytesIO(data))
        arr = arr[arr.files[0]].astype(np.float64)
        arr = (255 * (arr - arr.min()) / max(1e-9, arr.max() - arr.min())).astype(np.uint8)
        return [Image.fromarray(arr).convert("RGB")]
    if member.endswith(".npy"):
        arr = np.load(io.BytesIO(data))  # faces, float 0..1, N x 25 x 25
        faces = []
        for i in range(0, min(len(arr), 40), 4):
            tile = np.concatenate([np.concatenate(arr[i + r * 2 : i + r * 2 + 2], axis=1) for r in range(2)], axis=0)
            faces.append(Image.fromarray((tile * 255).astype(np.uint8)).convert("RGB").resize((200, 200), Image.BICUBIC))
        return faces
    img = Image.open(io.BytesIO(data))
    if img.mode in ("RGBA", "LA", "P"):
        img = img.convert("RGBA")
        bg = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(bg, img)
    return [img.convert("RGB")]


def split(img, grid):
    if grid is None:
        return [img]
    cols, rows = grid
    w, h = img.size
    return [
        img.crop((c * w // cols, r * h // rows, (c + 1) * w // cols, (r + 1) * h // rows))
        for r in range(rows)
        for c in range(cols)
    ]


def occlude(img, frac, rng):
    img = img.copy()
    w, h = img.size
    aspect = rng.uniform(0.6, 1.6)
    ow = min(w, int(math.sqrt(frac * w * h * aspect)))
    oh = min(h, int(frac * w * h / max(ow, 1)))
    x, y = rng.randint(0, w - ow), rng.randint(0, h - oh)
    color = tuple(rng.randint(0, 255) for _ in range(3))
    img.paste(Image.new("RGB", (ow, oh), color), (x, y))
    return img


def distort(img, kind, rng):
    w, h = img.size
    if kind == "occl25":
        return occlude(img, 0.25, rng)
    if kind == "occl40":
        return occlude(img, 0.40, rng)
    if kind == "dark":
        a = np.asarray(img).astype(np.float32) / 255.0
        return Image.fromarray((255 * a**2.5).astype(np.uint8))
    if kind == "overexp":
        a = np.asarray(img).astype(np.float32)
        return Image.fromarray(np.clip(a * 1.8 + 40, 0, 255).astype(np.uint8))
    if kind == "blur":
        return img.filter(ImageFilter.GaussianBlur(radius=max(w, h) * 0.008))
    if kind == "rot20":
        return img.rotate(rng.choice([-20, 20]), resample=Image.BICUBIC, expand=True, fillcolor=(128, 128, 128))
    if kind == "crop70":
        cw, ch = int(w * 0.7), int(h * 0.7)
        x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
        return img.crop((x, y, x + cw, y + ch))
    if kind == "jpeg20":
        return img  # encoded at quality 20 when written
    if kind == "cast":
        gains = [1.3, 1.0, 0.7]
        rng.shuffle(gains)
        a = np.asarray(img).astype(np.float32) * np.array(gains, dtype=np.float32)
        return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))
    raise ValueError(kind)


def save_jpeg(img, path, quality=90):
    img.save(path, "JPEG", quality=quality)


def background(distractors, rng):
    src = rng.choice(distractors)
    w, h = FRAME
    bg = src.resize((w, h), Image.BILINEAR) if src.size[0] < w or src.size[1] < h else src.crop((0, 0, w, h))
    bg = bg.resize((w, h))
    return ImageEnhance.Brightness(bg).enhance(rng.uniform(0.6, 1.0))


def iou(a, b):
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    ix = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = ix * iy
    return inter / (aw * ah + bw * bh - inter)


def compose(items, distractors, rng, scale_range):
    """items: list of (label, PIL image). Returns the scene and [(label, box fractions)]."""
    w, h = FRAME
    scene = background(distractors, rng)
    placed = []
    for label, img in items:
        s = rng.uniform(*scale_range)
        side = s * min(w, h)
        iw, ih = img.size
        f = side / max(iw, ih)
        pw, ph = max(8, int(iw * f)), max(8, int(ih * f))
        for _ in range(200):
            x, y = rng.randint(0, w - pw), rng.randint(0, h - ph)
            box = (x / w, y / h, pw / w, ph / h)
            if all(iou(box, b) <= 0.12 for _, b in placed):
                break
        scene.paste(img.resize((pw, ph), Image.BILINEAR), (x, y))
        placed.append((label, box))
    return scene, placed


def build(args):
    rng = random.Random(args.seed)
    out = args.out
    os.makedirs(os.path.join(out, "gallery"), exist_ok=True)
    os.makedirs(os.path.join(out, "queries"), exist_ok=True)
    products = []  # (sku, image, source, part index)
    for name, prefix, member, grid in PRODUCT_SOURCES:
        img = load(args.wheels, prefix, member)[0]
        for i, part in enumerate(split(img, grid)):
            sku = f"{name}-{i}" if grid else name
            products.append((sku, part, name, i, grid))
    second = {}
    for name, (prefix, member) in SECOND_VIEWS.items():
        grid = next(g for n, _, _, g in PRODUCT_SOURCES if n == name)
        for i, part in enumerate(split(load(args.wheels, prefix, member)[0], grid)):
            second[f"{name}-{i}"] = part
    distractors = []
    for prefix, member in DISTRACTOR_SOURCES:
        distractors.extend(load(args.wheels, prefix, member))

    gallery = []
    for sku, img, *_ in products:
        f = f"gallery/{sku}.png"
        img.save(os.path.join(out, f))
        gallery.append({"sku": sku, "file": f, "width": img.size[0], "height": img.size[1]})

    queries = []
    n_singles = len(products) if not args.small else 12
    chosen = products if not args.small else rng.sample(products, n_singles)
    for sku, img, *_ in chosen:
        for kind in KINDS:
            q = distort(img, kind, rng)
            qid = f"{kind}-{sku}"
            f = f"queries/{qid}.jpg"
            save_jpeg(q, os.path.join(out, f), 20 if kind == "jpeg20" else 90)
            queries.append({"id": qid, "file": f, "kind": kind, "products": [{"sku": sku, "box": None}]})
        if sku in second:
            qid = f"view2-{sku}"
            f = f"queries/{qid}.jpg"
            save_jpeg(second[sku], os.path.join(out, f))
            queries.append({"id": qid, "file": f, "kind": "view2", "products": [{"sku": sku, "box": None}]})

    n_scenes = 10 if args.small else 40
    for kind, scale in (("scene40", (0.4, 0.4)), ("scene", (0.3, 0.6))):
        for i in range(n_scenes):
            k = rng.randint(2, 4)
            items = [(sku, img) for sku, img, *_ in rng.sample(products, k)]
            scene, placed = compose(items, distractors, rng, scale)
            qid = f"{kind}-{i:03d}"
            f = f"queries/{qid}.jpg"
            save_jpeg(scene, os.path.join(out, f))
            queries.append(
                {"id": qid, "file": f, "kind": kind, "products": [{"sku": s, "box": list(b)} for s, b in placed]}
            )

    n_dis = 12 if args.small else 50
    for i in range(n_dis):
        src = rng.choice(distractors)
        w, h = src.size
        cw, ch = int(w * rng.uniform(0.5, 1.0)), int(h * rng.uniform(0.5, 1.0))
        x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
        q = src.crop((x, y, x + cw, y + ch))
        q = distort(q, rng.choice(["dark", "overexp", "blur", "cast", "rot20", "jpeg20"]), rng)
        qid = f"distractor-{i:03d}"
        f = f"queries/{qid}.jpg"
        save_jpeg(q, os.path.join(out, f))
        queries.append({"id": qid, "file": f, "kind": "distractor", "products": []})
    for i in range(n_dis // 3):
        items = []
        for _ in range(rng.randint(2, 3)):
            src = rng.choice(distractors)
            w, h = src.size
            cw, ch = int(w * 0.5), int(h * 0.5)
            x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
            items.append((None, src.crop((x, y, x + cw, y + ch))))
        scene, _ = compose(items, distractors, rng, (0.3, 0.6))
        qid = f"distractor-scene-{i:03d}"
        f = f"queries/{qid}.jpg"
        save_jpeg(scene, os.path.join(out, f))
        queries.append({"id": qid, "file": f, "kind": "distractor-scene", "products": []})

    manifest = {"seed": args.seed, "gallery": gallery, "queries": queries}
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    print(f"{len(gallery)} products, {len(queries)} queries in {out}")


def box_iou(a, b):
    return iou(tuple(a), tuple(b))


def score_rows(manifest, results, min_score):
    by_id = {r["id"]: r for r in results}
    stats = {}
    for q in manifest["queries"]:
        r = by_id.get(q["id"])
        if r is None:
            continue
        objs = [o for o in r["objects"] if o["score"] >= min_score]
        s = stats.setdefault(q["kind"], {"n": 0, "top1": 0, "top5": 0, "tp": 0, "gt": 0, "pred": 0, "fa": 0, "ms": []})
        s["n"] += 1
        s["ms"].append(r.get("millis", 0.0))
        gt = q["products"]
        if q["kind"].startswith("distractor"):
            s["fa"] += 1 if objs else 0
            continue
        if q["kind"].startswith("scene"):
            s["gt"] += len(gt)
            s["pred"] += len(objs)
            used = set()
            for o in objs:
                for j, g in enumerate(gt):
                    if j not in used and o["sku"] == g["sku"] and box_iou(o["box"], g["box"]) >= 0.3:
                        used.add(j)
                        s["tp"] += 1
                        break
            continue
        sku = gt[0]["sku"]
        # single product: the best object; its candidates give top-5
        if objs:
            best = objs[0]
            s["top1"] += best["sku"] == sku
            s["top5"] += sku in [c["sku"] for c in best["candidates"][:5]] or best["sku"] == sku
        s["pred"] += len(objs)
        s["tp"] += 1 if any(o["sku"] == sku for o in objs) else 0
    return stats


def table(stats):
    lines = ["| kind | n | top-1 | top-5 | recall | precision | false-accept | ms p50 / p99 |", "|---|---|---|---|---|---|---|---|"]
    for kind in sorted(stats):
        s = stats[kind]
        ms = sorted(s["ms"]) or [0.0]
        lat = f"{ms[len(ms) // 2]:.0f} / {ms[min(len(ms) - 1, int(len(ms) * 0.99))]:.0f}"
        n = s["n"]
        if kind.startswith("distractor"):
            lines.append(f"| {kind} | {n} | | | | | {100 * s['fa'] / n:.1f} % | {lat} |")
        elif kind.startswith("scene"):
            rec = 100 * s["tp"] / max(1, s["gt"])
            prec = 100 * s["tp"] / max(1, s["pred"])
            lines.append(f"| {kind} | {n} | | | {rec:.1f} % | {prec:.1f} % | | {lat} |")
        else:
            prec = 100 * s["tp"] / max(1, s["pred"])
            lines.append(
                f"| {kind} | {n} | {100 * s['top1'] / n:.1f} % | {100 * s['top5'] / n:.1f} % | | {prec:.1f} % | | {lat} |"
            )
    return "\n".join(lines)


def summary(stats):
    single = [s for k, s in stats.items() if not k.startswith(("scene", "distractor"))]
    scenes = [s for k, s in stats.items() if k.startswith("scene")]
    dis = [s for k, s in stats.items() if k.startswith("distractor")]
    n1 = sum(s["n"] for s in single)
    top1 = sum(s["top1"] for s in single) / max(1, n1)
    rec = sum(s["tp"] for s in scenes) / max(1, sum(s["gt"] for s in scenes))
    prec = sum(s["tp"] for s in scenes) / max(1, sum(s["pred"] for s in scenes))
    fa = sum(s["fa"] for s in dis) / max(1, sum(s["n"] for s in dis))
    return top1, rec, prec, fa


def score(args):
    with open(os.path.join(args.data, "manifest.json")) as f:
        manifest = json.load(f)
    with open(args.results) as f:
        results = [json.loads(line) for line in f if line.strip()]
    print(f"threshold sweep ({len(results)} queries): min_score -> single top-1, scene recall, scene precision, open-set false accepts")
    best = None
    for t in np.arange(0.40, 0.86, 0.025):
        top1, rec, prec, fa = summary(score_rows(manifest, results, float(t)))
        print(f"  {t:.3f}: top-1 {100 * top1:5.1f} %  recall {100 * rec:5.1f} %  precision {100 * prec:5.1f} %  false-accept {100 * fa:5.1f} %")
        # calibration: the lowest threshold whose open-set false-accept rate is <= 5 %
        if best is None and fa <= 0.05:
            best = float(t)
    if best is None:  # no threshold reaches 5 %: take the one with the fewest false accepts
        best = min(np.arange(0.40, 0.86, 0.025), key=lambda t: summary(score_rows(manifest, results, float(t)))[3])
        best = float(best)
    chosen = args.min_score if args.min_score is not None else best
    print(f"\nmin_score = {chosen:.3f} ({'given' if args.min_score is not None else 'calibrated: lowest with false accepts <= 5 %'})\n")
    print(table(score_rows(manifest, results, chosen)))
    top1, rec, prec, fa = summary(score_rows(manifest, results, chosen))
    print(f"\noverall: single-product top-1 {100 * top1:.1f} %, scene recall {100 * rec:.1f} %, precision {100 * prec:.1f} %, open-set false accepts {100 * fa:.1f} %")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("--wheels", default="var/eval/wheels")
    b.add_argument("--out", default="var/eval/data")
    b.add_argument("--seed", type=int, default=13)
    b.add_argument("--small", action="store_true")
    s = sub.add_parser("score")
    s.add_argument("--data", default="var/eval/data")
    s.add_argument("--results", default="var/eval/results.jsonl")
    s.add_argument("--min-score", type=float, default=None)
    args = ap.parse_args()
    {"build": build, "score": score}[args.cmd](args)


if __name__ == "__main__":
    main()
