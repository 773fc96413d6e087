"""Using a trained generator: loading it, seeded samples, latent interpolation, style
mixing and projection."""

from fastpgan.generate.commands import generate, interpolate, style_mix
from fastpgan.generate.latents import parse_seeds, seed_latents, slerp
from fastpgan.generate.load import load_generator
from fastpgan.generate.project import project

__all__ = ["generate", "interpolate", "load_generator", "parse_seeds", "project",
           "seed_latents", "slerp", "style_mix"]
