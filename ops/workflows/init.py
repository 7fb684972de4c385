"""`ops init`: a starting layout for a team's own repository.

A team keeps its fleet's settings and playbooks in its own repository and
installs `ops` as a tool; this writes the folders `ops` looks for there, with
every setting written out as a comment to read and fill in. It never
overwrites: a file that exists already stops it before anything is written.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from ops.config import Settings, setting_descriptions
from ops.errors import BadInput
from ops.project import bundled

ENVIRONMENTS = {
    "staging": {"target_filter": "{Env: staging}", "concurrency": '"25%"', "max_errors": '"5%"'},
    "production": {
        "target_filter": "{Env: production}",
        "concurrency": '"10%"',
        "max_errors": '"2%"',
    },
}

SAMPLE_PLAYBOOK = """\
---
# A first playbook: ops playbook playbooks/hello.yml --target Role=web --via ssm
- name: Say hello from every targeted host
  hosts: all
  gather_facts: false
  tasks:
    - name: Show where the play runs
      ansible.builtin.debug:
        msg: "{{ inventory_hostname }} answers"
"""

MOLECULE_README = """\
# Molecule scenarios

One scenario per role under `playbooks/roles/`: `molecule init scenario -r ROLE`
here, with the docker driver, `pre_build_image: true` and `network_mode: host`
on the images your fleet runs. `ops sandbox up` builds Debian 12 and Amazon
Linux stand-in images (fleetops/host:*) that scenarios can use.
"""

GITIGNORE = """\
# ops writes these; they do not belong in the repository
inventories/sandbox/hosts.yml
.state/
*.retry
__pycache__/
"""


def settings_file(env: str) -> str:
    """Every key, commented, with its meaning and default: the file documents itself."""
    defaults = Settings(env=env)
    chosen = ENVIRONMENTS.get(env, {})
    lines = [
        f"# Settings for the {env} environment. Keys and types are checked by `ops`;",
        "# precedence: command-line flag > OPS_<KEY> variable > this file > default.",
    ]
    for key, meaning in setting_descriptions().items():
        default = getattr(defaults, key)
        lines.append("")
        if dataclasses.is_dataclass(default) and not isinstance(
            default, type
        ):  # a section: each of its keys, with its default
            lines.append(f"# {key}: {meaning}")
            lines.append(f"# {key}:")
            for name, value in dataclasses.asdict(default).items():
                shown = list(value) if isinstance(value, tuple) else value
                lines.append(f"#   {name}: {json.dumps(shown)}")
            continue
        lines.append(f"# {key}: {meaning} (default: {default!r})")
        lines.append(f"# {key}: {chosen.get(key, '')}".rstrip())
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Layout:
    files: dict[str, str]

    def write(self, root: Path) -> list[Path]:
        """Refuse before writing anything when one file is there already."""
        taken = [rel for rel in self.files if (root / rel).exists()]
        if (root / "inventories").exists() and not taken:
            taken = ["inventories/"]
        if taken:
            raise BadInput(
                f"{root} already has {taken[0]}: ops init never overwrites; "
                "pick an empty folder or edit the files there"
            )
        written = []
        for rel, text in self.files.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            written.append(path)
        return written


def layout() -> Layout:
    files = {f"inventories/{env}/ops.yml": settings_file(env) for env in ENVIRONMENTS}
    sandbox = bundled("inventories") / "sandbox"
    for source in sorted(sandbox.rglob("*")):
        if source.is_file() and source.name != "hosts.yml":
            files[f"inventories/sandbox/{source.relative_to(sandbox)}"] = source.read_text()
    files["playbooks/hello.yml"] = SAMPLE_PLAYBOOK
    files["playbooks/roles/.gitkeep"] = ""
    files["molecule/README.md"] = MOLECULE_README
    files[".gitignore"] = GITIGNORE
    return Layout(files)
