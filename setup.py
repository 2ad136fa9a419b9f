"""Packaging for losslines. The metadata — name, version, dependencies, extras, the console
script — is the ``[project]`` table of pyproject.toml; this file maps the layout: the package,
and the shipped configs (``configs/*.toml``) installed as package data under
``losslines/configs/``, so that ``losslines run quickstart`` works after any install.
"""
from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["losslines", "losslines.*"]) + ["losslines.configs"],
    package_dir={"losslines.configs": "configs"},
    package_data={"losslines": ["py.typed"], "losslines.configs": ["*.toml"]},
)
