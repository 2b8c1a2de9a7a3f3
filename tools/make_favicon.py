"""Draw book/_extra/favicon.ico from the shapes of book/_static/favicon.svg.

Browsers ask for /favicon.ico on pages without an icon link, such as the site root's
redirect page; Sphinx copies book/_extra/ to the root of the site (html_extra_path).

    python tools/make_favicon.py
"""

from pathlib import Path

from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
SCALE = 4  # draw at 4 x 96 pixels, then shrink: smooth edges


def bezier(p0, p1, p2, p3, steps=40):
    for i in range(steps + 1):
        t = i / steps
        yield tuple(
            (1 - t) ** 3 * a + 3 * (1 - t) ** 2 * t * b + 3 * (1 - t) * t**2 * c + t**3 * d
            for a, b, c, d in zip(p0, p1, p2, p3, strict=True)
        )


def draw() -> Image.Image:
    s = SCALE
    image = Image.new("RGBA", (96 * s, 96 * s), (0, 0, 0, 0))
    pen = ImageDraw.Draw(image)
    pen.rounded_rectangle((2 * s, 2 * s, 94 * s, 94 * s), radius=16 * s, fill="#1f3b63")
    left = list(bezier((12, 74), (30, 74), (36, 22), (48, 22)))
    right = list(bezier((48, 22), (60, 22), (66, 74), (84, 74)))
    points = [(x * s, y * s) for x, y in left + right[1:]]
    pen.line(points, fill="#f2b134", width=8 * s, joint="curve")
    for x, y in (points[0], points[-1]):  # round caps
        pen.ellipse((x - 4 * s, y - 4 * s, x + 4 * s, y + 4 * s), fill="#f2b134")
    pen.ellipse((41 * s, 15 * s, 55 * s, 29 * s), fill="#ffffff")
    return image.resize((96, 96), Image.LANCZOS)


if __name__ == "__main__":
    out = ROOT / "book" / "_extra" / "favicon.ico"
    draw().save(out, sizes=[(16, 16), (32, 32), (48, 48)])
    print("wrote", out)
