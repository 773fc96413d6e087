"""Using a trained generator: loading it, seeded samples, and latent interpolation."""

from fastpgan.generate.latents import parse_seeds, seed_latents, slerp
from fastpgan.generate.load import load_generator

__all__ = ["load_generator", "parse_seeds", "seed_latents", "slerp"]
