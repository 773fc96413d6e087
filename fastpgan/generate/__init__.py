"""Using a trained generator: seeded samples, latent interpolation, style mixing and
projection (loading one is :func:`fastpgan.runs.load_generator`)."""

from fastpgan.generate.commands import generate, interpolate, style_mix
from fastpgan.generate.latents import SEED_RNGS, parse_seeds, seed_latents, slerp
from fastpgan.generate.project import project

__all__ = ["SEED_RNGS", "generate", "interpolate", "parse_seeds", "project",
           "seed_latents", "slerp", "style_mix"]
