"""Natural-image inputs for the indicators where CIFAR-10 cannot be had: 32x32 crops of photos.

TE-NAS feeds its NTK and linear-region networks CIFAR-10 images; this project's default inputs
are standard normal. Where CIFAR-10 is not on the machine (nothing is downloaded here), this
script writes a stand-in with natural-image statistics: random square crops (a quarter to all of
the shorter side) of six colour photos that ship inside scikit-image's wheel (astronaut, Chelsea
the cat, coffee, rocket, Hubble deep field, retina), resized to 32x32 with anti-aliasing and
flipped at random. They are not CIFAR-10: six scenes, not ten classes of objects.

    pip install scikit-image   # or the `bench` extra
    python3 -m benchmarks natural-images --out benchmarks/data/natural_images.npz
    python3 -m benchmarks search-quality --mode fast --images benchmarks/data/natural_images.npz

The .npz holds `images` `[count, 32, 32, 3]` uint8, which `micronas-jax search --data` and
`micronas-jax score --data` read. The same seed gives the same file.
"""
from __future__ import annotations

import argparse
import hashlib
import pathlib
import sys

import numpy as np

# scikit-image sample photos in colour (loader names in skimage.data), all inside its wheel.
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "retina")


def load_photos() -> list[np.ndarray]:
  """The PHOTOS as uint8 `[H, W, 3]` arrays; a clear exit where scikit-image is missing."""
  try:
    import skimage.data
  except ImportError:
    raise SystemExit("natural_images needs scikit-image: pip install scikit-image "
                     "(or pip install -e '.[bench]')") from None
  return [np.asarray(getattr(skimage.data, name)())[..., :3] for name in PHOTOS]


def crops(photos: list[np.ndarray], count: int, seed: int, size: int = 32) -> np.ndarray:
  """`count` random square crops `[count, size, size, 3]` uint8 of `photos`: a photo drawn
  uniformly, a side of U(0.25, 1) times its shorter side at a uniform position, resized with
  anti-aliasing, flipped left-right with probability 1/2."""
  from skimage.transform import resize

  rng = np.random.default_rng(seed)
  out = np.empty((count, size, size, 3), np.uint8)
  for k in range(count):
    photo = photos[rng.integers(len(photos))]
    height, width, _ = photo.shape
    side = int(rng.uniform(0.25, 1.0) * min(height, width))
    top, left = rng.integers(0, height - side + 1), rng.integers(0, width - side + 1)
    crop = resize(photo[top:top + side, left:left + side], (size, size), anti_aliasing=True)
    if rng.random() < 0.5:
      crop = crop[:, ::-1]
    out[k] = (crop * 255).clip(0, 255).astype(np.uint8)
  return out


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--out", type=pathlib.Path,
                      default=pathlib.Path("benchmarks/data/natural_images.npz"))
  parser.add_argument("--count", type=int, default=2048)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()
  if args.count < 1:
    raise SystemExit("--count must be positive")
  images = crops(load_photos(), args.count, args.seed)
  args.out.parent.mkdir(parents=True, exist_ok=True)
  np.savez_compressed(args.out, images=images)
  digest = hashlib.sha256(images.tobytes()).hexdigest()[:16]
  print(f"wrote {args.out}: {images.shape} uint8 from {', '.join(PHOTOS)} (seed {args.seed}, "
        f"sha256 of the pixels {digest}...)", file=sys.stderr)


if __name__ == "__main__":
  main()
