"""Production code reads no test switch: every ``D365SNOW_*`` name in the package is a setting the README documents.

Test faults are installed by the tests themselves (e.g. tests/invoice_flow/crash_launcher.py), never by an
environment variable a production process would honour.
"""

from __future__ import annotations

import re
from pathlib import Path

import d365_snow_assets

ROOT = Path(d365_snow_assets.__file__).parent
NAME = re.compile(r"D365SNOW_[A-Z0-9_]*[A-Z0-9]")


def test_every_environment_name_in_the_package_is_a_documented_setting() -> None:
    readme = (ROOT.parent / "README.md").read_text(encoding="utf-8")
    documented = set(NAME.findall(readme))
    used: dict[str, list[str]] = {}
    for source in ROOT.rglob("*.py"):
        for name in NAME.findall(source.read_text(encoding="utf-8")):
            used.setdefault(name, []).append(str(source.relative_to(ROOT.parent)))
    # "D365SNOW_D365_*" in a message names a family of documented settings.
    undocumented = {n: files for n, files in used.items() if not any(d.startswith(n) for d in documented)}
    assert used and not undocumented
