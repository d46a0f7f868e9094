"""Snakemake profiles: find one by name, and install the bundled ones where `snakemake --profile NAME`
looks them up, so that plain Snakemake works after `pip install` (`pipe-rules init`).

Snakemake finds a profile NAME in the working folder, then in its user config folder
($XDG_CONFIG_HOME/snakemake, default ~/.config/snakemake), then in the site config folder.
An installed copy is the user's to edit: `init` records the hash of what it wrote beside it and
only ever replaces a copy whose text still has that hash; an edited or foreign copy is kept
unless --force is given, and then it is first renamed to a backup.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from pipe_rules import __version__
from pipe_rules.contracts.errors import ConfigError
from pipe_rules.host.resources import (
    PROFILE_FILE,
    bundled_profile_names,
    bundled_profiles_dir,
    resource_root,
    snakefile,
    starter_config,
)

MARKER = ".pipe_rules_init.json"  # beside an installed profile: what init wrote there, and its hash
_TOP_LEVEL = re.compile(r"^(?P<key>[A-Za-z][\w-]*):(?P<space>\s*)(?P<quote>[\"']?)(?P<value>[^\s\"'#]+)(?P<rest>.*)$")


def user_profiles_dir() -> Path:
    """Snakemake's user profile folder (the same platformdirs call Snakemake makes)."""
    from platformdirs import user_config_dir

    return Path(user_config_dir("snakemake", "snakemake"))


def resolve_profile(profile: str | Path) -> Path:
    """A profile folder as given; else a name: the user's installed copy (`pipe-rules init`), then
    the copy bundled with the package."""
    given = Path(profile)
    if given.is_dir():
        return given
    for folder in (user_profiles_dir() / str(profile), bundled_profiles_dir() / str(profile)):
        if (folder / PROFILE_FILE).is_file():
            return folder
    raise ConfigError(f"no profile folder {profile!r} here, in {user_profiles_dir()} or among the bundled "
                      f"profiles ({', '.join(bundled_profile_names())})", field="--profile")


def installed_profile_text(name: str) -> str:
    """The bundled profile with its relative script paths made absolute (they are relative to the
    bundled folder, which the copy leaves) and the package's Snakefile named, so that
    `snakemake --profile NAME` runs pipe_rules from any folder holding a config.yaml."""
    source = bundled_profiles_dir() / name
    workflow = str(resource_root() / "workflow")
    lines = [f"# Installed by `pipe-rules init` from pipe_rules {__version__} ({source}).",
             "# Edit freely: init replaces this file only while it is unedited (or with --force, after a backup).",
             f"snakefile: {snakefile()}"]
    for line in (source / PROFILE_FILE).read_text(encoding="utf-8").splitlines():
        lines.append(_absolute_paths(line, source, workflow))
    return "\n".join(lines) + "\n"


def _absolute_paths(line: str, source: Path, workflow: str) -> str:
    found = _TOP_LEVEL.match(line)
    if not found or found["key"] == "snakefile":
        return line
    value = found["value"]
    if "{workflow.basedir}" in value:
        new = os.path.normpath(value.replace("{workflow.basedir}", workflow))
    elif not os.path.isabs(value) and "/" in value and (source / value).exists():
        new = os.path.normpath(source / value)
    else:
        return line
    return f"{found['key']}:{found['space']}{found['quote']}{new}{found['rest']}"


@dataclass(frozen=True)
class Installed:
    path: Path
    action: str  # written, updated, unchanged, kept, replaced

    def line(self) -> str:
        notes = {"written": "written", "updated": "updated (it was unedited)", "unchanged": "already up to date",
                 "kept": "kept: it was edited or not written by pipe-rules init (--force replaces it, after a backup)",
                 "replaced": "replaced (--force); the old one was renamed to a .bak file beside it"}
        return f"{self.path}: {notes[self.action]}"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _backup(path: Path) -> None:
    n = 1
    while path.with_name(f"{path.name}.bak{n}").exists():
        n += 1
    path.rename(path.with_name(f"{path.name}.bak{n}"))


def install_file(path: Path, text: str, force: bool = False, track: bool = True) -> Installed:
    """Write `text` to `path` unless a user's edited copy is there. With `track`, the marker beside
    it records what was written, so a later init may update a copy nobody edited."""
    marker = path.parent / MARKER
    written = {}
    if track and marker.is_file():
        try:
            written = json.loads(marker.read_text())
        except (OSError, ValueError):
            written = {}
    action = "written"
    if path.exists():
        current = path.read_text(encoding="utf-8", errors="replace")
        if current == text:
            return Installed(path, "unchanged")
        if written.get(path.name) == _digest(current):
            action = "updated"
        elif not force:
            return Installed(path, "kept")
        else:
            _backup(path)
            action = "replaced"
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    temp.write_text(text, encoding="utf-8")
    os.replace(temp, path)
    if track:
        written[path.name] = _digest(text)
        marker.write_text(json.dumps(written, indent=1, sort_keys=True) + "\n")
    return Installed(path, action)


def init(folder: Path, names: list[str] | None = None, force: bool = False, config: bool = True) -> list[Installed]:
    """Install the bundled profiles (all, or `names`) into Snakemake's user profile folder and a
    starter campaign config (the demo campaign) as `folder`/config.yaml."""
    known = bundled_profile_names()
    unknown = sorted(set(names or ()) - set(known))
    if unknown:
        raise ConfigError(f"no bundled profile {', '.join(map(repr, unknown))} (bundled: {', '.join(known)})",
                          field="--profile")
    done = [install_file(user_profiles_dir() / name / PROFILE_FILE, installed_profile_text(name), force)
            for name in (names or known)]
    if config:
        done.append(install_file(folder / "config.yaml", starter_config().read_text(encoding="utf-8"), force,
                                 track=False))
    return done
