#!/usr/bin/python
"""Merge settings into Docker's daemon.json without losing what the host already has.

Why a module of its own: a template or `copy` would replace the file, and
with it any key an earlier owner put there (a registry mirror, a data root,
a storage driver). This reads the file, sets only the keys it manages, keeps
every other key, and writes only when the merged content differs in meaning
(not in formatting), so a second run reports no change. A file that is not
valid JSON is refused, never overwritten. Runs under Python 2.7 too (Ansible
2.9 on Amazon Linux 2), hence no f-strings or annotations.
"""

from __future__ import absolute_import, division, print_function  # noqa: UP010

import copy
import json
import os
import tempfile

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: docker_daemon_config
short_description: Merge managed keys into Docker's daemon.json, keeping the rest
description:
  - Sets the keys in C(managed); a key that holds a mapping (C(log-opts)) is merged one level deep.
  - Keys in C(defaults) are set only where the file does not have them.
  - C(rotation) log options are added only when the effective log driver is one of C(rotation_drivers).
options:
  path: {description: The daemon.json path., type: path, default: /etc/docker/daemon.json}
  managed: {description: Keys always set to these values., type: dict, default: {}}
  defaults: {description: Keys set only when absent., type: dict, default: {}}
  rotation: {description: log-opts for rotation (max-size, max-file)., type: dict, default: {}}
  rotation_drivers: {description: Log drivers that take the rotation options., type: list, elements: str, default: [json-file, local]}
"""

DEFAULT_DRIVER = "json-file"


def merge(existing, managed, defaults, rotation, rotation_drivers):
    """The new configuration and a note (empty, or why rotation was not applied)."""
    merged = copy.deepcopy(existing)
    for key, value in (defaults or {}).items():
        merged.setdefault(key, copy.deepcopy(value))
    for key, value in (managed or {}).items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            inner = dict(merged[key])
            inner.update(value)
            merged[key] = inner
        else:
            merged[key] = copy.deepcopy(value)
    note = ""
    if rotation:
        driver = merged.get("log-driver", DEFAULT_DRIVER)
        if driver in rotation_drivers:
            opts = merged.get("log-opts")
            opts = dict(opts) if isinstance(opts, dict) else {}
            opts.update(dict((k, str(v)) for k, v in rotation.items()))
            merged["log-opts"] = opts
        else:
            note = "log-driver %s kept as the host has it; rotation options apply to %s only" % (
                driver,
                ", ".join(rotation_drivers),
            )
    return merged, note


def read(path):
    """(config, exists); raises ValueError with the reason when it cannot be used."""
    if not os.path.exists(path):
        return {}, False
    with open(path) as handle:
        text = handle.read()
    if not text.strip():
        return {}, True
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ValueError("%s is not valid JSON (%s); fix it or move it aside" % (path, exc))
    if not isinstance(data, dict):
        raise ValueError("%s holds a JSON %s, not an object" % (path, type(data).__name__))
    return data, True


def render(config):
    return json.dumps(config, indent=2, sort_keys=True) + "\n"


def write(path, text):
    folder = os.path.dirname(path) or "."
    if not os.path.isdir(folder):
        os.makedirs(folder, 0o755)
    handle, tmp = tempfile.mkstemp(prefix=".daemon.json.", dir=folder)
    try:
        with os.fdopen(handle, "w") as out:
            out.write(text)
        os.chmod(tmp, 0o644)
        os.rename(tmp, path)
    except Exception:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", default="/etc/docker/daemon.json"),
            managed=dict(type="dict", default={}),
            defaults=dict(type="dict", default={}),
            rotation=dict(type="dict", default={}),
            rotation_drivers=dict(type="list", elements="str", default=["json-file", "local"]),
        ),
        supports_check_mode=True,
    )
    path = module.params["path"]
    try:
        existing, exists = read(path)
    except (OSError, IOError, ValueError) as exc:
        module.fail_json(msg=str(exc))
    merged, note = merge(
        existing,
        module.params["managed"],
        module.params["defaults"],
        module.params["rotation"],
        module.params["rotation_drivers"],
    )
    changed = merged != existing
    result = dict(
        changed=changed,
        path=path,
        config=merged,
        kept=sorted(k for k in existing if k not in (module.params["managed"] or {})),
        note=note,
    )
    if module._diff:
        result["diff"] = dict(
            before=render(existing) if exists else "", after=render(merged), before_header=path
        )
    if changed and not module.check_mode:
        if exists:
            result["backup_file"] = module.backup_local(path)
        try:
            write(path, render(merged))
        except (OSError, IOError) as exc:
            module.fail_json(msg="cannot write %s: %s" % (path, exc), **result)
    if note:
        module.warn(note)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
