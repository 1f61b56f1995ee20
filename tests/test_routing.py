"""Routing: paths are matched exactly. A trailing slash is a 404 in OpenAI's shape, never a redirect
built from the request's Host header (Starlette's default), which would be an open redirect."""

from __future__ import annotations

import httpx
import pytest

from .harness import ADMIN_TOKEN, Gateway

PATHS = ["/admin/v1/tenants/", "/admin/v1/queue/", "/healthz/", "/readyz/", "/metrics/", "/admin/v1/tenants/acme/users/"]


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
@pytest.mark.parametrize("path", PATHS)
def test_a_trailing_slash_is_a_404_never_a_redirect_to_the_host_header(gateway: Gateway, path: str, method: str) -> None:
    response = httpx.request(method, gateway.url + path, headers={"Host": "evil.example", "Authorization": f"Bearer {ADMIN_TOKEN}"},
                             follow_redirects=False, timeout=10)
    assert response.status_code in (404, 405), (response.status_code, response.headers.get("location"))
    assert "location" not in response.headers
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


def test_the_paths_without_the_slash_still_answer(gateway: Gateway) -> None:
    assert httpx.get(gateway.url + "/healthz", headers={"Host": "evil.example"}).status_code == 200
    assert httpx.get(gateway.url + "/admin/v1/tenants", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).status_code == 200
