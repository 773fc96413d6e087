"""StackGAN (Zhang et al. 2017): ``models.py`` holds the two stages' networks in plain
PyTorch with fastpgan.nn's ConditioningAugmentation, ``python -m examples.stackgan``
trains them (``--fused``: through fastpgan.nn.fuse)."""
