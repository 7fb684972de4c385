"""moto's server as the sandbox runs it: unchanged, but for one lookup that does not scale.

moto looks up an EC2 resource's tags (`TaggedEC2Resource.get_tags`) by
running its DescribeTags filter over every tag of every resource in the
region and matching each resource id against a regular expression. Every
instance DescribeInstances returns, and every instance a `tag:` filter
looks at, pays that scan, so a listing costs O(instances x tagged
resources): about seven minutes for eleven thousand synthetic instances,
which is what a fan-out benchmark at ten thousand hosts needs.

The remedy reads the same tag store by resource id (a dictionary lookup)
and returns the same records, so responses do not change; only their cost
does. Run it as `python -m ops.sandbox.moto_server` with moto.server's own
arguments.
"""

from __future__ import annotations

import sys
from typing import Any


def _tags_by_id(resource: Any) -> list[dict[str, str]]:
    from moto.ec2.utils import EC2_PREFIX_TO_RESOURCE, get_prefix

    resource_id = resource.id
    if not resource_id:
        return []
    # .get, not [...]: the store is a defaultdict and a lookup must not add to it
    tags = resource.ec2_backend.tags.get(resource_id)
    if not tags:
        return []
    kind = EC2_PREFIX_TO_RESOURCE.get(get_prefix(resource_id), "")
    return [
        {"resource_id": resource_id, "key": key, "value": value, "resource_type": kind}
        for key, value in tags.items()
    ]


def patch_tag_lookup() -> None:
    """Replace moto's per-resource tag scan with a lookup by resource id."""
    from moto.ec2.models.core import TaggedEC2Resource

    TaggedEC2Resource.get_tags = _tags_by_id  # type: ignore[method-assign,assignment]


def main(argv: list[str] | None = None) -> None:
    patch_tag_lookup()
    from moto.server import main as moto_main

    moto_main(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
