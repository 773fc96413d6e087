"""CycleGAN (Zhu et al. 2017): ``models.py`` holds the generator in plain PyTorch,
``python -m examples.cyclegan`` trains the pair (``--fused``: through fastpgan.nn.fuse)."""
