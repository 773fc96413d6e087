"""fastpgan's examples: GAN systems in plain PyTorch, and the same through fastpgan.nn.

``python -m examples.<system>`` trains one (see each package); ``examples/train.py``
trains the DCGAN pair.
"""
