"""Only what ``pyproject.toml`` cannot say; all other metadata is there.

Two subpackages live in top-level folders of the checkout and are mapped onto them: ``zsltune.search_spaces`` onto
``search_spaces/`` (the one copy users edit) and ``zsltune.analysis`` onto ``analysis/``. ``package-data`` in
``pyproject.toml`` takes every ``*.yaml`` of the first and ``paper_results.csv`` of the second, so a wheel installs
them as ``zsltune/search_spaces/*.yaml`` and ``zsltune/analysis/``, with no top-level ``analysis`` module.
``pyproject.toml`` can map a package directory but cannot add a mapped package to the ones ``packages.find``
discovers, hence this file.
"""

from setuptools import find_namespace_packages, setup

# folder of the checkout -> the subpackage it installs as
MAPPED = {"zsltune.analysis": "analysis", "zsltune.search_spaces": "search_spaces"}

setup(
    packages=[*find_namespace_packages(include=["zsltune*"]), *MAPPED],
    package_dir=MAPPED,
)
