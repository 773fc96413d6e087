"""Installs fastpgan. The top-level kernels/ folder becomes the subpackage fastpgan.kernels."""

from setuptools import setup

setup(
    name="fastpgan",
    version="0.1.0",
    description="Fused GPU kernels and layers for Progressive GANs and StyleGAN-style networks",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=["fastpgan", "fastpgan.ops", "fastpgan.nn", "fastpgan.kernels"],
    package_dir={"fastpgan.kernels": "kernels"},
    install_requires=[
        "torch>=2.6",
        "triton>=3.2; platform_system == 'Linux'",
        "numpy",
        "pillow",
    ],
    extras_require={
        "test": ["pytest>=8", "pytest-benchmark>=4", "ruff"],
        "gpu": ["nvidia-ml-py"],
    },
)
