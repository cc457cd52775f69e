"""The `sharepoint` connector: SharePoint Online document libraries through Microsoft Graph.

Importing this package needs neither office365 nor msal: the connector registers either
way, and says what to install when they are missing.
"""

from ingestd.plugin import hookimpl

from .connector import SharePointConnector


@hookimpl
def register_connectors(register):
    register(SharePointConnector)
