"""A fake Microsoft Graph and Entra ID token endpoint for the SharePoint connector's tests."""

from .drive import Drive, sha256
from .server import FakeGraph, Record, Site
from .tls import CA, ClientCert, make_ca, make_client_cert

__all__ = ["CA", "ClientCert", "Drive", "FakeGraph", "Record", "Site", "make_ca", "make_client_cert", "sha256"]
