"""Turning botocore exceptions into ingestd's typed errors.

The message is built from the error code and the service's own message, never from the
request: S3 echoes the string-to-sign and the access key id in some error bodies, and
those must not reach a manifest. The request id travels separately so a support ticket
can cite it.
"""

from __future__ import annotations

from ingestd.errors import Code, ConnectorError

# The credentials themselves are bad: every request will fail, so the job stops.
CREDENTIAL_CODES = {
    "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken", "TokenRefreshRequired",
    "InvalidClientTokenId", "UnrecognizedClientException", "AccountProblem", "AllAccessDisabled",
}
DENIED_CODES = {"AccessDenied", "AccessDeniedException", "Forbidden", "403"}
NOT_FOUND_CODES = {"NoSuchBucket", "NoSuchKey", "NotFound", "404"}
THROTTLE_CODES = {
    "SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequests",
    "TooManyRequestsException", "RequestThrottled", "ServiceUnavailable", "503", "429",
}
_RETRYABLE = {Code.THROTTLED, Code.TRANSIENT}
CONFIG_CODES = {"PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException",
                "InvalidBucketName", "301", "400"}


def request_id(response: dict | None) -> str | None:
    meta = (response or {}).get("ResponseMetadata", {})
    headers = meta.get("HTTPHeaders", {})
    return meta.get("RequestId") or headers.get("x-amz-request-id") or headers.get("x-amzn-requestid")


class RemoteError(ConnectorError):
    """A ConnectorError that remembers the service's error code (`name`)."""

    def __init__(self, code: Code, message: str, *, name: str, request_id: str | None):
        super().__init__(code, message, request_id=request_id, retryable=code in _RETRYABLE)
        self.name = name

    @property
    def bad_credentials(self) -> bool:
        """No other request of this job can succeed with these credentials."""
        return self.name in CREDENTIAL_CODES


def client_error(exc, what: str) -> RemoteError:
    """A `ClientError` (the service answered with an error) as a typed ConnectorError."""
    error = exc.response.get("Error", {})
    name = str(error.get("Code") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or "unknown")
    text = str(error.get("Message") or "").strip()
    code, hint = _classify(name, exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode"))
    message = f"{what}: {hint} ({name}{': ' + text if text else ''})"
    return RemoteError(code, message, name=name, request_id=request_id(exc.response))


def _classify(name: str, status: int | None) -> tuple[Code, str]:
    if name == "InvalidObjectState":
        return Code.UNAVAILABLE, "the object is archived (Glacier, Deep Archive); restore it to ingest it"
    if name in CREDENTIAL_CODES:
        return Code.AUTH, "the credentials were rejected; check the access key and secret (or the role) the source uses"
    if name in DENIED_CODES or status == 403:
        return Code.AUTH, "access denied; the credentials lack permission (s3:ListBucket on the bucket, s3:GetObject on keys)"
    if name == "NoSuchBucket":
        return Code.NOT_FOUND, "the bucket does not exist (check 'bucket', 'endpoint_url' and 'region')"
    if name in NOT_FOUND_CODES or status == 404:
        return Code.NOT_FOUND, "not found"
    if name in THROTTLE_CODES or status in (429, 503):
        return Code.THROTTLED, "throttled by the service after retries; the next run continues"
    if name in CONFIG_CODES or status in (301, 400):
        return Code.CONFIG, "the request was refused as malformed; check 'region', 'endpoint_url' and 'addressing_style'"
    if name == "PreconditionFailed" or status == 412:
        return Code.TRANSIENT, "the object changed while being fetched; the next run takes it"
    return Code.TRANSIENT, "the service failed the request"


def translate(exc: Exception, what: str) -> ConnectorError | None:
    """Any botocore exception as a ConnectorError; None for exceptions that are not botocore's."""
    from botocore import exceptions as bx

    if isinstance(exc, bx.ClientError):
        return client_error(exc, what)
    if isinstance(exc, (bx.NoCredentialsError, bx.PartialCredentialsError)):
        return ConnectorError(Code.AUTH, f"{what}: no usable AWS credentials: name a registry credential in "
                                         "'credentials', or provide them to the default chain (environment, "
                                         "profile, instance or pod role)")
    if isinstance(exc, bx.CredentialRetrievalError):
        return ConnectorError(Code.AUTH, f"{what}: could not obtain credentials: {type(exc).__name__}")
    if isinstance(exc, bx.ProfileNotFound):
        return ConnectorError(Code.CONFIG, f"{what}: {exc}; create it with `aws configure --profile NAME`")
    if isinstance(exc, bx.ParamValidationError):
        return ConnectorError(Code.CONFIG, f"{what}: invalid request parameters: {exc}")
    if isinstance(exc, (bx.EndpointConnectionError, bx.ConnectTimeoutError)):
        return ConnectorError(Code.TRANSIENT, f"{what}: cannot reach the endpoint ({type(exc).__name__})",
                              retryable=True)
    if isinstance(exc, bx.BotoCoreError):
        return ConnectorError(Code.TRANSIENT, f"{what}: {type(exc).__name__}: {exc}", retryable=True)
    return None
