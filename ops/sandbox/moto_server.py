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
does.

moto also pages DescribeInstances by reservation: its MaxResults (default
100) counts reservations, so a region whose synthetic instances were
launched a thousand to a reservation answers ten thousand instances in one
page, and a client parses them all at once. EC2 bounds a page by MaxResults
(5 to 1,000) results, which are instances, and refuses a value outside that
range; its reference does not say a page keeps reservations whole, and one
reservation can hold more instances than a page may, so
`patch_instance_paging` splits a reservation where a page ends and continues
it on the next page under the same ReservationId. Pages hold at most
MaxResults instances, in moto's order; NextToken is the id of the page's
last instance; a call without MaxResults is not paged (EC2 answers an
unpaginated call whole). Concatenated, the pages hold exactly the instances,
in the order, of one unpaged call.

Every request moto serves (EC2, ELBv2 and the rest of its query and JSON
APIs, and S3) is appended to a JSONL call log when `--call-log PATH` is given, in
the shape the Run Command emulator logs SSM's, so `ops sandbox calls` shows
a run's DescribeInstances pages beside its SendCommands.

ELBv2 target health comes from real HTTP checks of each target's port, and
a deregistered target drains for its group's deregistration delay
(`ops.sandbox.elb_health`).

Run it as `python -m ops.sandbox.moto_server [--call-log PATH]` followed by
moto.server's own arguments.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import sys
import threading
import time
from collections.abc import Mapping, Sequence
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


MIN_RESULTS, MAX_RESULTS = 5, 1000


def page_by_instance(
    reservations: Sequence[Any], limit: int, after: int, order: Mapping[str, int]
) -> tuple[list[Any], str | None]:
    """One page of at most `limit` instances, those whose place in `order` comes
    after `after`, regrouped into (copies of) their reservations; and the token
    for the next page (the id of the page's last instance), or None."""
    taken: list[Any] = []
    count = 0
    for reservation in reservations:
        instances = [i for i in reservation.instances if order.get(i.id, -1) > after]
        if not instances:
            continue
        if count == limit:
            return taken, taken[-1].instances[-1].id
        part = copy.copy(reservation)
        part.instances = instances[: limit - count]
        count += len(part.instances)
        taken.append(part)
        if len(part.instances) < len(instances):
            return taken, part.instances[-1].id
    return taken, None


def _describe_instances(self: Any) -> Any:
    """InstanceResponse.describe_instances, paged by instance as EC2 pages it."""
    from moto.core.responses import ActionResult
    from moto.ec2.exceptions import (
        InvalidNextToken,
        InvalidParameterCombination,
        InvalidParameterValueError,
    )

    self.error_on_dryrun()
    instance_ids = self._get_param("InstanceIds", [])
    max_results = self._get_param("MaxResults")
    if instance_ids and max_results is not None:
        raise InvalidParameterCombination(
            "The parameter instancesSet cannot be used with the parameter maxResults"
        )
    filters = self._filters_from_querystring()
    backend = self.ec2_backend
    if instance_ids:
        reservations = backend.get_reservations_by_instance_ids(instance_ids, filters=filters)
    else:
        reservations = backend.describe_instances(filters=filters)
    if max_results is None:
        return ActionResult({"Reservations": reservations, "NextToken": None})
    limit = int(max_results)
    if not MIN_RESULTS <= limit <= MAX_RESULTS:
        raise InvalidParameterValueError(f"{max_results} (maxResults: {MIN_RESULTS}-{MAX_RESULTS})")
    # every instance's place in moto's order; reservations are only ever added to,
    # so a token stays valid while instances come, go out of a filter or terminate
    order = {
        instance.id: place
        for place, instance in enumerate(
            instance for reservation in backend.reservations.values()
            for instance in reservation.instances
        )
    }  # fmt: skip
    token = self._get_param("NextToken")
    if token and token not in order:
        raise InvalidNextToken(token)
    page, next_token = page_by_instance(reservations, limit, order[token] if token else -1, order)
    return ActionResult({"Reservations": page, "NextToken": next_token})


def patch_instance_paging() -> None:
    """Make DescribeInstances count MaxResults in instances, as EC2 does."""
    from moto.ec2.responses.instances import InstanceResponse

    InstanceResponse.describe_instances = _describe_instances  # type: ignore[method-assign]


def _remembered_keys(original: Any) -> Any:
    """`AttributePicker.get_possible_keys`, worked out once per object class, key and
    shape instead of once per attribute of every object written."""
    cache: dict[tuple[Any, ...], tuple[Any, Any, list[str]]] = {}

    def get_possible_keys(self: Any, context: Any) -> Any:
        obj = context.obj
        shape = context.shape
        parent = getattr(shape, "parent", None)
        if "Meta" in getattr(obj, "__dict__", ()):  # an alias table of its own: not per class
            return original(self, context)
        key = (type(self), id(self.alias_providers), type(obj), context.key, id(shape), id(parent))
        hit = cache.get(key)
        if hit is not None and hit[0] is shape and hit[1] is parent:
            return iter(hit[2])
        keys = list(original(self, context))
        if len(cache) > 100_000:  # shapes made afresh per request would only fill it
            cache.clear()
        cache[key] = (shape, parent, keys)
        return iter(keys)

    return get_possible_keys


def patch_serializer_keys() -> None:
    """moto's response serializer asks, for every attribute of every object it writes,
    each of its alias providers which names the attribute may go by (explicit
    aliases, the shape's name, the class name as a prefix, the model's name...).
    The answer depends on the object's class, the key and the shape alone, yet a
    DescribeInstances page of 1,000 instances asked it about a hundred thousand
    times: most of the five seconds of CPU the page cost on a 2-core machine,
    where EC2 answers in one or two. The answers are remembered, so responses do
    not change, only their cost."""
    from moto.core.serialize import AttributePicker, XFormedAttributePicker

    for picker in (AttributePicker, XFormedAttributePicker):
        if "get_possible_keys" in vars(picker):
            picker.get_possible_keys = _remembered_keys(picker.get_possible_keys)  # type: ignore[method-assign]


_LOGGED_PARAMS = ("MaxResults", "NextToken")


def _summary(querystring: Mapping[str, Any]) -> dict[str, Any]:
    """A few parameters worth seeing in a log: paging, and how many ids a call named."""
    out: dict[str, Any] = {}
    for key in _LOGGED_PARAMS:
        value = querystring.get(key)
        if value:
            text = str(value[0] if isinstance(value, list) else value)
            out[key] = text if len(text) <= 40 else text[:37] + "..."
    ids = sum(1 for key in querystring if key.startswith("InstanceId."))
    if ids:
        out["InstanceIds"] = ids
    for key, value in querystring.items():
        # the zone a DescribeInstances listing is narrowed to (Filter.N.Name / Filter.N.Value.1)
        if (
            key.startswith("Filter.")
            and key.endswith(".Name")
            and _first(value) == "availability-zone"
        ):
            out["Zone"] = _first(querystring.get(key[: -len("Name")] + "Value.1", ""))
    return out


def _first(value: Any) -> str:
    return str(value[0] if isinstance(value, list) and value else value)


_ERROR_CODE = re.compile(r"<Code>([^<]{1,100})</Code>|\"__type\":\s*\"([^\"]{1,100})\"")


def _signer(headers: Mapping[str, Any], url: str) -> str:
    """The access key id a request was signed with (header, or a presigned URL's query):
    who made a call, so `ops iam policy` can be checked against what each principal did."""
    found = _CREDENTIAL.search(
        str(headers.get("Authorization") or headers.get("authorization") or "")
    )
    found = found or _CREDENTIAL.search(url.replace("%2F", "/"))
    return found.group(1) if found else ""


def _error_code(body: Any, status: Any) -> str:
    """The error code in an XML or JSON error body, else the HTTP status."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    found = _ERROR_CODE.search(text[:4000])
    return (found.group(1) or found.group(2)) if found else str(status)


_CREDENTIAL = re.compile(r"Credential=([A-Za-z0-9]+)/")
_S3_OPERATIONS = {
    ("object", "GET"): "GetObject",
    ("object", "PUT"): "PutObject",
    ("object", "HEAD"): "HeadObject",
    ("object", "DELETE"): "DeleteObject",
    ("bucket", "GET"): "ListObjects",
    ("bucket", "PUT"): "CreateBucket",
    ("bucket", "HEAD"): "HeadBucket",
    ("bucket", "DELETE"): "DeleteBucket",
}


class _CallLog:
    """One JSON line per request served, numbered in the order they finish."""

    def __init__(self, path: str) -> None:
        self._sink = open(path, "a", encoding="utf-8")  # noqa: SIM115 - open for the server's life
        self._lock = threading.Lock()
        self._numbers = itertools.count(1)

    def served(
        self, service: str, operation: str, params: dict[str, Any], call: Any, key: str = ""
    ) -> Any:
        """Serve `call()` and log it, whatever its outcome; `key` is the signer's access key id."""
        started = time.time()
        clock = time.perf_counter()
        status: Any = 500
        error: str | None = "InternalError"
        try:
            result = call()
            status = result[0]
            error = None if str(status).startswith("2") else _error_code(result[2], status)
            return result
        finally:
            entry = {
                "time": started,
                "service": service,
                "operation": operation,
                "params": params,
                "status": int(status) if str(status).isdigit() else status,
                "error": error,
                "throttled": False,
                "elapsed_ms": round((time.perf_counter() - clock) * 1000, 3),
                "key": key,
            }
            with self._lock:
                entry["seq"] = next(self._numbers)
                self._sink.write(json.dumps(entry, default=str) + "\n")
                self._sink.flush()


def patch_call_log(path: str) -> None:
    """Log every action moto serves: its query and JSON APIs (EC2, ELBv2, ...) all
    pass through BaseResponse.call_action; S3 has its own bucket and key handlers."""
    from moto.core.responses import BaseResponse
    from moto.s3.responses import S3Response

    log = _CallLog(path)
    call_action = BaseResponse.call_action

    def logged_action(self: Any) -> Any:
        try:
            operation = str(self._get_action())
        except Exception:  # an unroutable request: moto answers it, the log names it so
            operation = "?"
        service = str(getattr(self, "service_name", "") or "")
        params = _summary(getattr(self, "querystring", {}) or {})
        key = _signer(getattr(self, "headers", {}) or {}, "")
        return log.served(service, operation, params, lambda: call_action(self), key)

    def s3_handler(kind: str, handler: Any) -> Any:
        def logged(self: Any, request: Any, full_url: str, headers: Any) -> Any:
            method = str(getattr(request, "method", "?"))
            operation = _S3_OPERATIONS.get((kind, method), f"{method} {kind}")
            key = _signer(headers or {}, full_url)
            return log.served(
                "s3", operation, {}, lambda: handler(self, request, full_url, headers), key
            )

        return logged

    BaseResponse.call_action = logged_action  # type: ignore[method-assign]
    S3Response.bucket_response = s3_handler("bucket", S3Response.bucket_response)  # type: ignore[method-assign]
    S3Response.key_response = s3_handler("object", S3Response.key_response)  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    patch_tag_lookup()
    patch_instance_paging()
    patch_serializer_keys()
    from ops.sandbox import elb_health

    elb_health.start()
    if args[:1] == ["--call-log"]:
        patch_call_log(args[1])
        args = args[2:]
    from moto.server import main as moto_main

    moto_main(args)


if __name__ == "__main__":
    main()
