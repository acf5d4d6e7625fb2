"""Maps the top-level folders agent/, server/, common/, cli/ to lictor.agent, lictor.server, ...

ARCHITECTURE.md keeps the layers as top-level folders; the import names all live under `lictor`.
Sub-packages are found by walking each folder, so adding one needs no edit here.
"""
from setuptools import find_packages, setup

LAYERS = ("common", "server", "agent", "cli")

package_dir = {"lictor": "lictor"}
packages = ["lictor"]
for layer in LAYERS:
    package_dir[f"lictor.{layer}"] = layer
    packages.append(f"lictor.{layer}")
    packages += [f"lictor.{layer}.{sub}" for sub in find_packages(layer)]

# the web UI's files ship in the wheel: the agent serves them from the installed package
package_data = {"lictor": ["py.typed"], "lictor.agent.ui": ["assets/*.html", "assets/*.js", "assets/*.css"]}
setup(packages=packages, package_dir=package_dir, package_data=package_data)
