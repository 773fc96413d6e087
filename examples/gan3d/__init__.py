"""3D-GAN (Wu et al. 2016): ``models.py`` holds the networks in plain PyTorch, ``shapes.py``
makes the voxel data, ``python -m examples.gan3d`` trains them (``--fused``: through
fastpgan.nn.fuse, whose BatchNormAct3d takes the 3-D batch norms)."""
