"""Packaging for losslines: the package, its console script and its dependencies."""
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def read_version() -> str:
    for line in (HERE / "losslines" / "_version.py").read_text().splitlines():
        if line.startswith("__version__"):
            return line.split("=", 1)[1].strip().strip('"')
    raise RuntimeError("losslines/_version.py has no __version__")


setup(
    name="losslines",
    version=read_version(),
    description="Measure the loss along every optimizer update direction during training, "
    "stream it to zarr, analyse it out of core.",
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",  # tomllib (losslines/runner/config.py)
    packages=find_packages(include=["losslines", "losslines.*"]),
    install_requires=[
        "torch>=2.4",
        "torchvision",
        "numpy>=1.24",
        "scipy>=1.10",
        "matplotlib>=3.7",
        "zarr>=3.1,<4",
        "fsspec>=2023.1",  # stores behind URLs (s3://, gs://, memory://) through zarr's FsspecStore
        "numcodecs>=0.13",
        "scikit-learn>=1.3",
        "tqdm>=4.60",
    ],
    extras_require={
        # dask + xarray back `LineStore.to_xarray()`; the tests exercise it.
        "xarray": ["xarray>=2024.1", "dask>=2024.1"],
        # `losslines analyze --scheduler threads|processes|ADDRESS` (ADDRESS: a dask cluster)
        "dask": ["dask>=2024.1", "distributed>=2024.1"],
        # HuggingFace causal LMs built from a config (`model.name = "hf:gpt2"`)
        "hf": ["transformers>=4.40"],
        "test": [
            "pytest>=8",
            "pytest-benchmark>=4",
            "hypothesis>=6.100",
            "xarray>=2024.1",
            "dask>=2024.1",
            "distributed>=2024.1",
            "transformers>=4.40",
        ],
    },
    entry_points={"console_scripts": ["losslines = losslines.cli:main"]},
)
