"""Identity-based push to ACR with the admin user off: exchange the deployer's Entra ID token.

``az acr login`` does the same exchange; doing it here lets ``pulumi up`` push the images it builds
without enabling the registry's admin account or storing a password.
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from collections.abc import Callable

# The fixed user name ACR expects alongside an exchanged refresh token.
ACR_TOKEN_USERNAME = "00000000-0000-0000-0000-000000000000"

TokenExchanger = Callable[[str, str, str], str]


def exchange_token(login_server: str, tenant_id: str, access_token: str) -> str:
    """An ACR refresh token for an Entra ID access token (POST /oauth2/exchange)."""
    body = urllib.parse.urlencode(
        {
            "grant_type": "access_token",
            "service": login_server,
            "tenant": tenant_id,
            "access_token": access_token,
        }
    ).encode()
    request = urllib.request.Request(f"https://{login_server}/oauth2/exchange", data=body, method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        return str(json.load(response)["refresh_token"])
