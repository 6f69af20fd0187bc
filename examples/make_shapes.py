"""Write examples/shapes/: 3 classes (circle, square, triangle) of 28x28 colour pictures, 150 of each.

The README's "Your own data" and "Your own model" sections train on this folder; it is committed, and this
script (seeded, so it writes the same pictures) shows how it was made: `python examples/make_shapes.py`.
"""

from __future__ import annotations

import random
from pathlib import Path

from PIL import Image, ImageDraw

SIZE, PER_CLASS = 28, 150


def draw(kind: str, rng: random.Random) -> Image.Image:
    background = tuple(rng.randrange(0, 90) for _ in range(3))
    colour = tuple(rng.randrange(140, 256) for _ in range(3))
    image = Image.new("RGB", (SIZE, SIZE), background)
    pen = ImageDraw.Draw(image)
    r = rng.randrange(6, 12)
    x, y = rng.randrange(r + 1, SIZE - r - 1), rng.randrange(r + 1, SIZE - r - 1)
    if kind == "circle":
        pen.ellipse((x - r, y - r, x + r, y + r), fill=colour)
    elif kind == "square":
        pen.rectangle((x - r, y - r, x + r, y + r), fill=colour)
    else:
        pen.polygon([(x, y - r), (x - r, y + r), (x + r, y + r)], fill=colour)
    return image


def main(root: Path = Path(__file__).parent / "shapes") -> None:
    rng = random.Random(0)
    for kind in ("circle", "square", "triangle"):
        (root / kind).mkdir(parents=True, exist_ok=True)
        for i in range(PER_CLASS):
            draw(kind, rng).save(root / kind / f"{kind}-{i:02d}.png", optimize=True)


if __name__ == "__main__":
    main()
