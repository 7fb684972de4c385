"""Build hook only (metadata lives in setup.cfg): the wheel carries what `ops` runs.

The playbooks, the sandbox's image recipes and the default inventories live
at the top of the source tree, where a team edits and lints them; a wheel
copies them under ops/_data/ so an installed `ops` finds them (ops.project).
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
BUNDLED = {"playbooks": "playbooks", "images": "scripts/images", "inventories": "inventories"}
SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", "hosts.yml", ".*")


class BuildWithData(build_py):
    def run(self) -> None:
        super().run()
        data = Path(self.build_lib) / "ops" / "_data"
        for name, source in BUNDLED.items():
            target = data / name
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(ROOT / source, target, ignore=SKIP)


setup(cmdclass={"build_py": BuildWithData})
