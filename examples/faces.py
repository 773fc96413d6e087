"""The examples' data, all offline: scikit-image's bundled LFW face crops (and their edge
maps), and scikit-learn's bundled handwritten digits with their labels.

``skimage.data.lfw_subset()`` ships 200 grayscale 25x25 crops with scikit-image: the
first 100 are faces (the rest are not, and are left out).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def load_faces(resolution: int = 32) -> torch.Tensor:
    """(100, 1, resolution, resolution) float32 faces in [-1, 1], plus their mirror images.

    Needs scikit-image (``pip install scikit-image``, or fastpgan's ``demo`` extra).
    """
    try:
        from skimage.data import lfw_subset
    except ImportError as exc:
        raise SystemExit("the examples need scikit-image: pip install scikit-image") from exc
    faces = torch.from_numpy(lfw_subset()[:100]).float().unsqueeze(1)
    faces = F.interpolate(faces, size=(resolution, resolution), mode="bilinear",
                          align_corners=False, antialias=True)
    faces = torch.cat([faces, faces.flip(3)]) * 2 - 1
    return faces.clamp(-1, 1)



def edge_maps(faces: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """Canny edge maps (scikit-image's ``feature.canny``) of faces in [-1, 1]: 1 on an
    edge, -1 elsewhere, the same shape (pix2pix's edges -> faces input)."""
    from skimage.feature import canny

    edges = [torch.from_numpy(canny(face[0].numpy(), sigma=sigma)) for face in faces]
    return torch.stack(edges).unsqueeze(1).float() * 2 - 1


def load_digits(resolution: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 1797 bundled 8x8 handwritten digits, upsampled to resolution x
    resolution in [-1, 1], (1797, 1, r, r), and their labels 0-9, (1797,).

    Needs scikit-learn (``pip install scikit-learn``, or fastpgan's ``demo`` extra).
    """
    try:
        from sklearn.datasets import load_digits as bundled_digits
    except ImportError as exc:
        raise SystemExit("this example needs scikit-learn: pip install scikit-learn") from exc
    digits = bundled_digits()
    images = torch.from_numpy(digits.images).float().unsqueeze(1) / 16
    images = F.interpolate(images, size=(resolution, resolution), mode="bilinear",
                           align_corners=False)
    return (images * 2 - 1).clamp(-1, 1), torch.from_numpy(digits.target).long()
