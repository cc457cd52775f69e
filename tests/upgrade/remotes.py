"""The remote side of a fixture: what moto and the fake Graph held when the state was made.

A state directory's cursors only mean something against the service they were made with:
a no-change S3 sync is free only if every key still has the ETag, size and LastModified
recorded, and a saved delta link only resumes on a drive whose change log reaches its token.
The generator saves a description of both services (`describe_*`) beside the state; the
tests rebuild the same services from it (`restore_*`), exactly, so a sync after an upgrade
sees "nothing changed" for the right reason.

moto has no way to set an object's LastModified over HTTP, so `restore_s3` sets it on the
in-process backend that moto's threaded server serves, then lists the bucket to prove the
listing shows what was recorded.
"""

from __future__ import annotations

import base64
from datetime import datetime

from tests.fakegraph import FakeGraph, Site
from tests.fakegraph.drive import Drive, Node

# -- S3 (moto) -------------------------------------------------------------------------


def describe_s3(client, buckets: list[str]) -> dict:
    """Every object of `buckets` with its listing fields and content."""
    out: dict[str, list[dict]] = {}
    for bucket in buckets:
        objects = out[bucket] = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for obj in page.get("Contents", []):
                body = client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
                objects.append({"key": obj["Key"], "etag": obj["ETag"].strip('"'), "size": obj["Size"],
                                "last_modified": obj["LastModified"].isoformat(), "body": _b64(body)})
    return {"buckets": out}


def restore_s3(moto, description: dict) -> None:
    """Recreate the buckets and objects, with their recorded ETags and LastModified."""
    for bucket, objects in description["buckets"].items():
        moto.s3.create_bucket(Bucket=bucket)
        for obj in objects:
            etag = moto.put(obj["key"], _unb64(obj["body"]), bucket=bucket)
            if etag != obj["etag"]:
                raise RuntimeError(f"s3://{bucket}/{obj['key']}: moto gave ETag {etag}, the fixture has {obj['etag']}")
            _moto_key(bucket, obj["key"]).last_modified = datetime.fromisoformat(obj["last_modified"])
        listed = {o["Key"]: o["LastModified"] for page in moto.s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket) for o in page.get("Contents", [])}
        wanted = {o["key"]: datetime.fromisoformat(o["last_modified"]) for o in objects}
        if listed != wanted:
            raise RuntimeError(f"bucket {bucket}: the listing does not show the recorded objects and times")


def _moto_key(bucket: str, key: str):
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    for backend in s3_backends[DEFAULT_ACCOUNT_ID].values():
        found = backend.get_object(bucket, key) if bucket in backend.buckets else None
        if found is not None:
            return found
    raise RuntimeError(f"moto holds no s3://{bucket}/{key} in its in-process backend")


# -- SharePoint (the fake Graph) ---------------------------------------------------------

_NODE_FIELDS = ("id", "name", "parent", "kind", "guid", "version", "content_version", "modified_by", "deleted")


def describe_graph(fake: FakeGraph) -> dict:
    """Tenant, apps, sites and every drive with its items and change log."""
    return {
        "tenant": fake.tenant,
        "apps": [{"client_id": a.client_id, "secret": a.secret} for a in fake.apps.values()],
        "sites": [{"id": s.id, "host": s.host, "path": s.path, "web_url": s.web_url, "title": s.title,
                   "drives": [_describe_drive(d) for d in s.drives]} for s in fake.sites],
    }


def _describe_drive(drive: Drive) -> dict:
    with drive.lock:
        nodes = [{**{f: getattr(n, f) for f in _NODE_FIELDS}, "content": _b64(n.content),
                  "created": n.created.isoformat(), "modified": n.modified.isoformat()}
                 for n in drive.nodes.values()]
        return {"id": drive.id, "name": drive.name, "url_name": drive.url_name, "root_id": drive.root_id,
                "seq": drive.seq, "oldest_valid": drive.oldest_valid, "log": [list(e) for e in drive.log],
                "nodes": nodes}


def restore_graph(fake: FakeGraph, description: dict) -> None:
    """Give `fake` (made with the recorded tenant) the recorded apps, sites and drives."""
    if fake.tenant != description["tenant"]:
        raise ValueError(f"the fake serves tenant {fake.tenant}; the fixture's is {description['tenant']}")
    for app in description["apps"]:
        fake.add_app(app["client_id"], app["secret"])
    for s in description["sites"]:
        site = Site(s["id"], s["host"], s["path"], s["web_url"], s["title"])
        site.drives = [_restore_drive(site, d) for d in s["drives"]]
        fake.sites.append(site)


def _restore_drive(site: Site, d: dict) -> Drive:
    drive = Drive(site, d["name"], d["url_name"])
    drive.id, drive.root_id, drive.seq, drive.oldest_valid = d["id"], d["root_id"], d["seq"], d["oldest_valid"]
    drive.log = [(seq, snapshot) for seq, snapshot in d["log"]]
    drive.nodes = {}
    for n in d["nodes"]:
        node = Node(**{f: n[f] for f in _NODE_FIELDS}, content=_unb64(n["content"]),
                    created=datetime.fromisoformat(n["created"]), modified=datetime.fromisoformat(n["modified"]))
        drive.nodes[node.id] = node
    return drive


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text)
