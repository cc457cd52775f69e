"""The Entra ID (Azure AD) side of the fake: OpenID configuration and the v2.0 token
endpoint's client-credentials grant, with a client secret or a certificate-signed JWT
assertion, answering errors the way Entra does (AADSTS codes, trace and correlation ids)."""

from __future__ import annotations

import base64
import secrets
import time
import uuid
from datetime import datetime, timezone
from urllib.parse import parse_qs


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


class EntraEndpoints:
    """Mixed into FakeGraph, which provides tenant, apps, tokens, lock and base_url."""

    def _openid(self, h, tenant: str) -> None:
        if tenant != self.tenant:
            return h.send_json(400, aad_error("invalid_tenant", 90002, f"Tenant '{tenant}' not found. Check to make "
                                              "sure you have the correct tenant ID and are signing into the correct cloud."))
        base = f"{self.base_url}/{tenant}"
        h.send_json(200, {
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "jwks_uri": f"{self.base_url}/{tenant}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"], "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"https://login.microsoftonline.com/{tenant}/v2.0", "request_uri_parameter_supported": False,
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "end_session_endpoint": f"{base}/oauth2/v2.0/logout", "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com", "msgraph_host": "graph.microsoft.com",
        })

    def _token(self, h, tenant: str) -> None:
        form = {k: v[0] for k, v in parse_qs(h.read_body().decode()).items()}
        if tenant != self.tenant:
            return h.send_json(400, aad_error("invalid_tenant", 90002, f"Tenant '{tenant}' not found."))
        if form.get("grant_type") != "client_credentials" or not form.get("scope", "").endswith("/.default"):
            return h.send_json(400, aad_error("invalid_request", 90014, "The request must be a client_credentials "
                                              "grant with a /.default scope."))
        app = self.apps.get(form.get("client_id", ""))
        if app is None:
            return h.send_json(400, aad_error("unauthorized_client", 700016, f"Application with identifier "
                                              f"'{form.get('client_id')}' was not found in the directory "
                                              f"'{tenant}'."))
        problem = self._client_auth_problem(app, form, tenant)
        if problem:
            return h.send_json(401, aad_error("invalid_client", *problem))
        token = "fake." + secrets.token_urlsafe(32)
        with self.lock:
            self.tokens[token] = (app.client_id, time.monotonic() + self.token_lifetime)
        h.send_json(200, {"token_type": "Bearer", "expires_in": self.token_lifetime,
                          "ext_expires_in": self.token_lifetime, "access_token": token})

    def _client_auth_problem(self, app, form: dict, tenant: str) -> tuple[int, str] | None:
        if "client_secret" in form:
            if app.secret is None or not secrets.compare_digest(form["client_secret"], app.secret):
                return 7000215, ("Invalid client secret provided. Ensure the secret being sent in the request is the "
                                 f"client secret value, not the client secret ID, for a secret added to app "
                                 f"'{app.client_id}'.")
            return None
        if form.get("client_assertion_type") == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
            return self._assertion_problem(app, form.get("client_assertion", ""), tenant)
        return 7000216, "'client_assertion', 'client_secret' or 'request' is required for the 'client_credentials' grant type."

    def _assertion_problem(self, app, assertion: str, tenant: str) -> tuple[int, str] | None:
        import jwt
        from cryptography.hazmat.primitives import hashes

        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.PyJWTError:
            return 50027, "Invalid JWT token. Token format not valid."
        for cert in app.certificates:
            sha256 = _b64url(cert.fingerprint(hashes.SHA256()))
            sha1 = _b64url(cert.fingerprint(hashes.SHA1()))
            x5t256 = (header.get("x5t#S256") or "").rstrip("=")
            x5t = (header.get("x5t") or "").rstrip("=")
            if x5t256 != sha256 and not (not x5t256 and x5t == sha1):
                continue
            try:
                claims = jwt.decode(assertion, cert.public_key(), algorithms=["PS256", "RS256"],
                                    audience=f"{self.base_url}/{tenant}/oauth2/v2.0/token")
            except jwt.PyJWTError as exc:
                return 700027, f"Client assertion failed signature validation. ({type(exc).__name__})"
            if claims.get("iss") != app.client_id or claims.get("sub") != app.client_id:
                return 700023, "Client assertion audience or issuer claim does not match."
            return None
        return 700027, ("Client assertion contains an invalid signature. [Reason - The key was not found., "
                        f"Thumbprint of key used by client: '{header.get('x5t#S256') or header.get('x5t')}']")


def aad_error(error: str, number: int, text: str) -> dict:
    trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
    return {
        "error": error,
        "error_description": f"AADSTS{number}: {text} Trace ID: {trace} Correlation ID: {correlation} Timestamp: {stamp}",
        "error_codes": [number], "timestamp": stamp, "trace_id": trace, "correlation_id": correlation,
        "error_uri": f"https://login.microsoftonline.com/error?code={number}",
    }
