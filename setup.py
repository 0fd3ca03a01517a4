"""Only what ``pyproject.toml`` cannot say; all other metadata is there.

The search spaces ship inside the package: the subpackage ``zsltune.search_spaces`` is mapped onto the top-level
``search_spaces/`` folder (the one copy users edit), and ``package-data`` in ``pyproject.toml`` takes every
``*.yaml`` in it, so a wheel installs them as ``zsltune/search_spaces/*.yaml``. ``pyproject.toml`` can map a
package directory but cannot add a mapped package to the ones ``packages.find`` discovers, hence this file.
"""

from setuptools import find_namespace_packages, setup

setup(
    packages=[*find_namespace_packages(include=["zsltune*", "analysis*"]), "zsltune.search_spaces"],
    package_dir={"zsltune.search_spaces": "search_spaces"},
)
