"""3D-GAN's data here: 32^3 occupancy grids of procedurally generated shapes, made on the
fly (nothing stored): spheres, boxes, tori and cylinders at random sizes, positions and
axes."""

from __future__ import annotations

import torch
from torch import Tensor

SIZE = 32
KINDS = ("sphere", "box", "torus", "cylinder")


def random_shapes(count: int, generator: torch.Generator, size: int = SIZE) -> Tensor:
    """(count, 1, size, size, size) float32 grids, 1 inside a shape, 0 outside."""
    axis = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 - 1  # cell centres
    grid = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"))  # (3, s, s, s)
    shapes = []
    for _ in range(count):
        kind = KINDS[int(torch.randint(len(KINDS), (), generator=generator))]
        u = torch.rand(6, generator=generator)
        centre = (u[:3] - 0.5) * 0.4  # within 0.2 of the middle
        p = grid - centre.view(3, 1, 1, 1)
        p = p[torch.randperm(3, generator=generator)]  # a random axis for tori and cylinders
        r = 0.35 + 0.35 * u[3]
        if kind == "sphere":
            inside = p.square().sum(0) <= r * r
        elif kind == "box":
            half = 0.25 + 0.4 * u[3:6]
            inside = (p.abs() <= half.view(3, 1, 1, 1)).all(0)
        elif kind == "torus":
            ring, tube = 0.3 + 0.3 * u[3], 0.1 + 0.1 * u[4]
            inside = ((p[0].square() + p[1].square()).sqrt() - ring).square() + p[2].square() \
                <= tube * tube
        else:  # cylinder
            inside = (p[0].square() + p[1].square() <= r * r) & (p[2].abs() <= 0.3 + 0.5 * u[4])
        shapes.append(inside.float())
    return torch.stack(shapes).unsqueeze(1)
