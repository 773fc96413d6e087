"""The examples' training loop: a DCGAN-style non-saturating GAN loss with Adam.

``python examples/train.py plain|fastpgan --steps 300 --out samples.png`` trains the
chosen pair (dcgan_plain.py or dcgan_fastpgan.py) on the bundled faces and saves a grid.
"""

from __future__ import annotations

import argparse
import importlib

import torch
import torch.nn.functional as F
from faces import load_faces  # examples/ is on sys.path when this script runs

from fastpgan.runs.pictures import save_grid

LATENT = 64


def train(models: str, steps: int = 300, batch: int = 32, device: str = "cpu",
          seed: int = 0) -> tuple[torch.nn.Module, list[tuple[float, float]]]:
    """Trains ``dcgan_<models>``'s networks; returns the generator and the (D, G) losses."""
    torch.manual_seed(seed)
    module = importlib.import_module(f"dcgan_{models}")
    G, D = module.Generator(LATENT).to(device), module.Discriminator().to(device)
    faces = load_faces(32).to(device)
    opt_g = torch.optim.Adam(G.parameters(), **module.ADAM)
    opt_d = torch.optim.Adam(D.parameters(), **module.ADAM)
    losses = []
    for _ in range(steps):
        real = faces[torch.randint(len(faces), (batch,), device=device)]
        fake = G(torch.randn(batch, LATENT, device=device))
        d_loss = F.softplus(D(fake.detach())).mean() + F.softplus(-D(real)).mean()
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        g_loss = F.softplus(-D(fake)).mean()
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        losses.append((d_loss.item(), g_loss.item()))
    return G.eval(), losses


def main(argv: list[str] | None = None) -> None:
    """Command line: which models, how many steps, where the sample grid goes."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", choices=["plain", "fastpgan"])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", default="samples.png")
    args = parser.parse_args(argv)
    G, losses = train(args.models, args.steps, args.batch, args.device)
    with torch.no_grad():
        save_grid(G(torch.randn(32, LATENT, device=args.device)), args.out, columns=8)
    print(f"{args.models}: {args.steps} steps, last D loss {losses[-1][0]:.3f}, "
          f"G loss {losses[-1][1]:.3f}; samples in {args.out}")


if __name__ == "__main__":
    main()
