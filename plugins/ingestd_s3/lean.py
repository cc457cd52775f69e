"""GET of one object without botocore's per-request pipeline, with botocore's own parts.

A first sync of many small objects spent ~1.3 ms of CPU per GET in botocore around the
HTTP exchange (endpoint rules, serialising, about twenty event hooks, response parsing),
more than the exchange itself, and on a shared machine that CPU is taken from everything
else. The URL and signing scope are resolved once per client and bucket by botocore
itself (its endpoint rules, run for a placeholder key whose request is stopped before it
is signed: addressing style, custom endpoint, region), and each
GET is then signed by botocore's SigV4 signer with the client's own credentials (every
provider of the chain, refreshes included) and sent through the client's own HTTP session
(its pool, proxies, CA bundle, timeouts, keep-alive).

What botocore would do with the answer is kept by calling the same parts: its retry
handlers decide and time every retry (`needs-retry`: standard mode, attempt cap, backoff,
retry quota), its XML parser reads error bodies into the same `ClientError`s, the body is
its `StreamingBody` (a body shorter than Content-Length raises), and on AWS the response
checksum is validated as `get_object` validates it. A region redirect is left to
`get_object`, which knows how to follow it.
"""

from __future__ import annotations

import time

from botocore import httpchecksum
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.exceptions import BotoCoreError, ResponseStreamingError
from botocore.parsers import RestXMLParser
from botocore.response import StreamingBody
from botocore.utils import percent_encode

from .client import parse_timestamp

OPERATION = "GetObject"
_PLACEHOLDER = "ingestd-lean-get-placeholder"
_REDIRECTS = (301, 302, 307)
_REDIRECT_CODES = {"PermanentRedirect", "AuthorizationHeaderMalformed"}


def getter(client, bucket: str):
    """`get(key) -> get_object's response`, lean where it can be, else `get_object` itself."""
    lean = LeanGet.build(client, bucket)
    if lean is not None:
        return lean.get
    return lambda key: client.get_object(Bucket=bucket, Key=key)


class LeanGet:
    """Signed GETs of one bucket's keys through one client's session and handlers."""

    def __init__(self, client, bucket: str, prefix: str, region: str, service: str):
        self._client = client
        self._bucket = bucket
        self._prefix = prefix  # the URL of the bucket's keys, up to the key itself
        self._region = region
        self._service = service
        self._credentials = client._request_signer._credentials  # botocore keeps no public handle
        self._session = client._endpoint.http_session
        self._operation = client.meta.service_model.operation_model(OPERATION)
        self._events = client.meta.events
        self._parser = RestXMLParser()
        self._headers = {"User-Agent": _user_agent(client)}
        self._checksum_context: dict = {}
        if client.meta.config.response_checksum_validation == "when_supported":
            self._headers["x-amz-checksum-mode"] = "ENABLED"
            request = {"context": {}}
            httpchecksum.resolve_response_checksum_algorithms(request, self._operation, {"ChecksumMode": "ENABLED"})
            self._checksum_context = request["context"]
        self._signer: tuple | None = None  # (frozen credentials, S3SigV4Auth)

    @classmethod
    def build(cls, client, bucket: str) -> "LeanGet | None":
        """None when botocore's own path is needed: no credentials (an unsigned client,
        or none found yet: `get_object` reports that), or a request botocore would not
        sign with plain SigV4 (S3 Express directory buckets, SigV4a)."""
        if client._request_signer._credentials is None:
            return None
        cache = client.__dict__.setdefault("_ingestd_lean_targets", {})
        if bucket not in cache:
            cache[bucket] = _target(client, bucket)
        target = cache[bucket]
        return None if target is None else cls(client, bucket, *target)

    def url(self, key: str) -> str:
        return self._prefix + percent_encode(key, safe="/~")  # as botocore renders `{Key+}`

    def get(self, key: str) -> dict:
        context = {"s3_redirected": True, "client_region": self._region,
                   "signing": {"bucket": self._bucket, "region": self._region}}
        request_dict = {"context": context, "url": self.url(key), "method": "GET"}
        attempts = 0
        while True:
            attempts += 1
            response, caught = None, None
            try:
                http = self._session.send(self._prepared(request_dict["url"]))
                if http.status_code == 200:
                    ok = {"ResponseMetadata": {"HTTPStatusCode": 200}}
                    self._retry_delay(attempts, request_dict, (http, ok), None)  # releases retry quota
                    return self._response(http)
                response = (http, self._error(http))
            except BotoCoreError as exc:  # transport failures; the retry handler judges them
                caught = exc
            if response is not None and _redirected(*response):
                return self._client.get_object(Bucket=self._bucket, Key=key)  # botocore follows redirects
            delay = self._retry_delay(attempts, request_dict, response, caught)
            if delay is None:
                if caught is not None:
                    raise caught
                parsed = response[1]
                raise self._client.exceptions.from_code(parsed.get("Error", {}).get("Code"))(parsed, OPERATION)
            time.sleep(delay)

    def _prepared(self, url: str):
        request = AWSRequest(method="GET", url=url, headers=dict(self._headers), stream_output=True)
        self._signer_now().add_auth(request)
        return request.prepare()

    def _signer_now(self) -> S3SigV4Auth:
        """The signer for the credentials of this moment (a refresh gives a new one)."""
        frozen = self._credentials.get_frozen_credentials()
        if self._signer is None or self._signer[0] != frozen:
            self._signer = (frozen, S3SigV4Auth(frozen, self._service, self._region))
        return self._signer[1]

    def _retry_delay(self, attempts: int, request_dict: dict, response, caught) -> float | None:
        """What the client's `needs-retry` handlers say: seconds to wait, or None."""
        replies = self._events.emit(
            f"needs-retry.s3.{OPERATION}", response=response, endpoint=self._client._endpoint,
            operation=self._operation, attempts=attempts, caught_exception=caught, request_dict=request_dict,
        )
        for _, reply in replies:
            if reply is not None and reply is not False:
                return reply
        return None

    def _error(self, http) -> dict:
        try:
            body = http.content
        except Exception as exc:  # the error answer itself broke off: a transport failure
            raise ResponseStreamingError(error=exc) from exc
        raw = {"headers": http.headers, "status_code": http.status_code, "body": body,
               "context": {"operation_name": OPERATION}}
        return self._parser.parse(raw, self._operation.output_shape)

    def _response(self, http) -> dict:
        headers = http.headers
        length = headers.get("content-length")
        raw = {"headers": headers, "context": {}}
        httpchecksum.handle_checksum_body(http, raw, self._checksum_context, self._operation)
        modified = headers.get("last-modified")
        return {
            "Body": raw.get("body") or StreamingBody(http.raw, length),
            "ETag": headers.get("etag"),
            "ContentLength": int(length) if length is not None else -1,
            "LastModified": parse_timestamp(modified) if modified else None,
            "VersionId": headers.get("x-amz-version-id"),
            "ContentType": headers.get("content-type"),
            "ResponseMetadata": {"RequestId": headers.get("x-amz-request-id") or headers.get("x-amzn-requestid"),
                                 "HostId": headers.get("x-amz-id-2"), "HTTPStatusCode": 200,
                                 "HTTPHeaders": headers},
        }


class _Captured(Exception):
    """Raised from `before-sign` to stop the placeholder request before it is sent."""


def _target(client, bucket: str) -> tuple[str, str, str] | None:
    """(URL prefix of the bucket's keys, signing region, signing name), as botocore
    resolves them for a GetObject: its endpoint rules run for a placeholder key and the
    request is stopped just before it would be signed, so nothing goes out."""
    seen: dict = {}

    def capture(request, signing_name, region_name, signature_version, **_):
        if not request.url.split("?", 1)[0].endswith("/" + _PLACEHOLDER):
            return  # another thread's request on the shared client
        signing = request.context.get("signing", {})
        seen.update(url=request.url, version=signature_version, unusual=bool(
                    signing.get("request_credentials") or signing.get("identity_cache") is not None),
                    region=signing.get("region") or region_name, name=signing.get("signing_name") or signing_name)
        raise _Captured

    event = f"before-sign.s3.{OPERATION}"
    client.meta.events.register_first(event, capture, unique_id="ingestd-lean-target")
    try:
        client.get_object(Bucket=bucket, Key=_PLACEHOLDER)
    except _Captured:
        pass
    except Exception:
        return None
    finally:
        client.meta.events.unregister(event, unique_id="ingestd-lean-target")
    if not seen or seen["unusual"] or seen["version"] not in ("s3v4", "v4") or "?" in seen["url"]:
        return None
    return seen["url"][: -len(_PLACEHOLDER)], seen["region"], seen["name"]


def _redirected(http, parsed: dict) -> bool:
    """Another region holds the bucket: botocore's redirector knows where to go."""
    return http.status_code in _REDIRECTS or parsed.get("Error", {}).get("Code") in _REDIRECT_CODES


def _user_agent(client) -> str:
    try:
        return client._user_agent_creator.to_string()
    except Exception:  # an older botocore without the creator: its configured string
        return client.meta.config.user_agent or "Botocore"
