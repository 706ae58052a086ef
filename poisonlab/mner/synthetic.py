"""A deterministic synthetic multimodal NER set, for tests and demos (not a benchmark).

Each tweet names one to three entities. PER, LOC and ORG have a visual counterpart drawn in the
image (PER: filled disc, LOC: filled triangle, ORG: striped square), at a random position and scale,
among distractors (grey strokes and blobs) and pixel noise; OTHER has none. Half of the names are
"ambiguous": the same pool for PER, LOC and ORG in type-neutral templates, so only the image tells
the type (this is what lets the image branch raise F1). Training boxes are manual (exact) or weak
(jittered, as from a grounding model) at random; valid and test boxes are manual. One training
image is missing and one is corrupt, to exercise the placeholder path.

Layout written to `out_dir`: train.txt, valid.txt, test.txt (CoNLL), images/<img_id>.png,
boxes.jsonl."""

from __future__ import annotations

import random
from pathlib import Path

from poisonlab.io import atomic_write
from poisonlab.mner.boxes import BoxRecord, write_boxes
from poisonlab.mner.conll import Tweet, write_conll

VISUAL_TYPES = ("PER", "LOC", "ORG")
NAMES = {
    "PER": ["Alice Moreau", "Bob", "Chen Wei", "Dana Scott", "Eli", "Fatima Khan", "Gus", "Hana Ito"],
    "LOC": ["Paris", "Lake Tahoe", "Nairobi", "Oslo", "Mount Fuji", "Lima", "Quebec City", "Perth"],
    "ORG": ["Acme Corp", "UNICEF", "Red Sox", "NASA", "Globex", "Oxfam", "Initech", "Arsenal FC"],
    "OTHER": ["World Cup", "iPhone", "Star Wars", "Coachella", "Super Bowl", "Minecraft", "Oscars"],
}
AMBIGUOUS = ["Jordan", "Phoenix", "Victoria", "Orion", "Sierra Nova", "Lincoln", "Austin", "Kenya Blue"]
TYPED_TEMPLATES = {
    "PER": ["{} said hello to fans", "great interview with {}", "{} scored twice tonight"],
    "LOC": ["sunset over {} tonight", "flying to {} next week", "rain again in {}"],
    "ORG": ["{} announced new jobs", "huge win for {}", "{} released a statement"],
    "OTHER": ["who is watching {} ?", "new {} trailer is out", "cannot wait for {}"],
}
NEUTRAL_TEMPLATES = ["look at {} !", "so proud of {} today", "{} is trending again",
                     "everyone loves {}", "throwback to {}"]
FILLERS = ["RT", "@user", "lol", "#wow", "omg", "http://t.co/x", ":)", "wow", "so", "and"]
SIZES = [(128, 128), (160, 128), (128, 96)]


def _entity(rng: random.Random) -> tuple[str, str, str]:
    """(type, name, template)."""
    kind = rng.choice(["PER", "LOC", "ORG", "OTHER"])
    if kind in VISUAL_TYPES and rng.random() < 0.5:
        return kind, rng.choice(AMBIGUOUS), rng.choice(NEUTRAL_TEMPLATES)
    return kind, rng.choice(NAMES[kind]), rng.choice(TYPED_TEMPLATES[kind])


def _tweet(rng: random.Random, img_id: str) -> Tweet:
    tokens: list[str] = []
    tags: list[str] = []
    if rng.random() < 0.5:
        tokens.append(rng.choice(FILLERS[:2]))
        tags.append("O")
    for k in range(rng.choice([1, 1, 2, 2, 3])):
        if k:
            tokens.append(rng.choice(["and", "|", ";"]))
            tags.append("O")
        kind, name, template = _entity(rng)
        for word in template.split():
            if word == "{}":
                parts = name.split()
                tokens.extend(parts)
                tags.extend([f"B-{kind}"] + [f"I-{kind}"] * (len(parts) - 1))
            else:
                tokens.append(word)
                tags.append("O")
    if rng.random() < 0.5:
        tokens.append(rng.choice(FILLERS[2:]))
        tags.append("O")
    return Tweet(img_id, tokens, tags)


def _place(rng: random.Random, width: int, height: int, taken: list[list[float]]) -> list[float]:
    """A random square box that overlaps earlier shapes as little as a few tries allow."""
    best = None
    for _ in range(20):
        side = rng.uniform(0.18, 0.4) * min(width, height)
        x1, y1 = rng.uniform(0, width - side), rng.uniform(0, height - side)
        box = [x1, y1, x1 + side, y1 + side]
        clear = all(box[2] < t[0] or box[0] > t[2] or box[3] < t[1] or box[1] > t[3] for t in taken)
        best = box
        if clear:
            break
    return [round(v, 1) for v in best]


def _draw(image, kind: str, box: list[float], rng: random.Random) -> None:
    from PIL import ImageDraw
    draw = ImageDraw.Draw(image)
    x1, y1, x2, y2 = box
    jitter = lambda c: tuple(max(0, min(255, v + rng.randint(-30, 30))) for v in c)  # noqa: E731
    if kind == "PER":
        draw.ellipse(box, fill=jitter((220, 60, 60)))
    elif kind == "LOC":
        draw.polygon([((x1 + x2) / 2, y1), (x2, y2), (x1, y2)], fill=jitter((50, 190, 70)))
    else:
        draw.rectangle(box, fill=jitter((60, 90, 220)))
        step = max(3, int((y2 - y1) / 6))
        for y in range(int(y1) + step, int(y2), 2 * step):
            draw.rectangle([x1, y, x2, min(y + step - 1, y2)], fill=(240, 240, 240))


def _image(rng: random.Random, tweet: Tweet, size: tuple[int, int]):
    """The image and its boxes per visual type."""
    import numpy as np
    from PIL import Image, ImageDraw
    width, height = size
    background = rng.randint(20, 90)
    image = Image.new("RGB", size, (background,) * 3)
    draw = ImageDraw.Draw(image)
    for _ in range(rng.randint(2, 5)):
        grey = rng.randint(100, 200)
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        if rng.random() < 0.5:
            draw.line([x, y, rng.uniform(0, width), rng.uniform(0, height)], fill=(grey,) * 3,
                      width=rng.randint(1, 3))
        else:
            r = rng.uniform(2, 8)
            draw.ellipse([x - r, y - r, x + r, y + r], fill=(grey,) * 3)
    boxes: dict[str, list[list[float]]] = {}
    taken: list[list[float]] = []
    for span in tweet.spans:
        if span.type in VISUAL_TYPES:
            box = _place(rng, width, height, taken)
            taken.append(box)
            _draw(image, span.type, box, rng)
            boxes.setdefault(span.type, []).append(box)
    pixels = np.asarray(image).astype(np.int16)
    noise = np.random.default_rng(rng.randint(0, 2**31)).integers(-12, 13, pixels.shape)
    return Image.fromarray(np.clip(pixels + noise, 0, 255).astype(np.uint8)), boxes


def _weak(rng: random.Random, box: list[float], width: int, height: int) -> list[float]:
    """A jittered box, as a grounding model would give: shifted and rescaled by up to ~15%."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    cx, cy = (x1 + x2) / 2 + rng.uniform(-0.15, 0.15) * w, (y1 + y2) / 2 + rng.uniform(-0.15, 0.15) * h
    w, h = w * rng.uniform(0.85, 1.15), h * rng.uniform(0.85, 1.15)
    return [round(max(0.0, cx - w / 2), 1), round(max(0.0, cy - h / 2), 1),
            round(min(width, cx + w / 2), 1), round(min(height, cy + h / 2), 1)]


def generate(out_dir: str | Path, n_train: int = 400, n_valid: int = 100, n_test: int = 200,
             seed: int = 0) -> Path:
    """Write the set to `out_dir` and return it; the same seed writes the same files."""
    out_dir = Path(out_dir)
    images_dir = out_dir / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    records: list[BoxRecord] = []
    counts = {"train": n_train, "valid": n_valid, "test": n_test}
    for split, count in counts.items():
        tweets = []
        for n in range(count):
            img_id = f"{split}_{n:05d}"
            tweet = _tweet(rng, img_id)
            tweets.append(tweet)
            size = rng.choice(SIZES)
            image, boxes = _image(rng, tweet, size)
            for kind, kind_boxes in boxes.items():
                weak = split == "train" and rng.random() < 0.5
                if weak:
                    kind_boxes = [_weak(rng, b, *size) for b in kind_boxes]
                records.append(BoxRecord(img_id, kind, kind_boxes, "weak" if weak else "manual"))
            path = images_dir / f"{img_id}.png"
            if split == "train" and n == 1:
                continue  # the missing image
            if split == "train" and n == 2:
                atomic_write(path, lambda p: p.write_bytes(b"not a png"))  # the corrupt image
                continue
            atomic_write(path, lambda p: image.save(p, format="PNG"))
        write_conll(out_dir / f"{split}.txt", tweets)
    write_boxes(out_dir / "boxes.jsonl", records)
    return out_dir
