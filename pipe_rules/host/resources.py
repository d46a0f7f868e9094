"""Where the installed package keeps the workflow, the profiles, the scripts and the starter config.

They sit at the top of the repository (workflow/, profiles/, scripts/, config.yaml) and are mapped
into the package as `pipe_rules/resources/` (symbolic links in the checkout, real copies in a wheel
or sdist), so they are found the same way in a pip install and in an editable checkout: through
importlib.resources, never through a path relative to the source tree.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from pipe_rules.contracts.errors import PipeRulesError

PROFILE_FILE = "config.v8+.yaml"


def resource_root() -> Path:
    """The package's resources folder, as a real folder (Snakemake reads these files by path)."""
    root = Path(str(files("pipe_rules") / "resources"))
    if not (root / "workflow" / "Snakefile").is_file():
        raise PipeRulesError(f"the pipe_rules package has no workflow at {root / 'workflow' / 'Snakefile'} "
                             "(installed from a zip, or an incomplete install?); reinstall pipe_rules with pip",
                             field="pipe_rules.resources")
    return root


def snakefile() -> Path:
    return resource_root() / "workflow" / "Snakefile"


def bundled_profiles_dir() -> Path:
    return resource_root() / "profiles"


def bundled_profile_names() -> list[str]:
    return sorted(p.name for p in bundled_profiles_dir().iterdir() if (p / PROFILE_FILE).is_file())


def starter_config() -> Path:
    return resource_root() / "config.yaml"
