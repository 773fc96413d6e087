"""Age-cGAN (Antipov et al. 2017): ``models.py`` holds the conditional generator (through
fastpgan.nn's LabelModulation), the discriminator and the encoder in plain PyTorch;
``python -m examples.agecgan`` trains them (``--fused``: through fastpgan.nn.fuse)."""
