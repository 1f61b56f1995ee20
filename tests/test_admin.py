"""Admin API for memories through real HTTP: auth, CRUD, search, pagination and clear OpenAI-shaped errors."""

from __future__ import annotations

import uuid

import httpx
import pytest

from gateway.memory.keywords import terms

from .harness import Gateway
from .memory_helpers import add_memory, tenant_of

KEY = "sk-admin-tests"


def assert_error(response: httpx.Response, status: int, param: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    if param is not None:
        assert error["param"] == param
    return error


@pytest.fixture
def admin(gateway: Gateway):
    with gateway.admin() as client:
        yield client


def user_path(user: str = "gina", key: str = KEY) -> str:
    return f"/tenants/{tenant_of(key)}/users/{user}/memories"


def test_requests_without_the_admin_token_are_refused(gateway: Gateway) -> None:
    url = gateway.url + "/admin/v1/tenants"
    assert_error(httpx.get(url), 401)
    error = assert_error(httpx.get(url, headers={"Authorization": "Bearer wrong-token"}), 401)
    assert error["type"] == "authentication_error"


def test_the_admin_api_is_absent_without_a_configured_token(start_gateway) -> None:
    gw = start_gateway(admin_token="")
    assert_error(httpx.get(gw.url + "/admin/v1/tenants", headers={"Authorization": "Bearer anything"}), 404)


def test_add_get_patch_delete_one_memory(admin: httpx.Client) -> None:
    created = admin.post(user_path(), json={"text": "I run marathons", "kind": "goal", "confidence": 0.8}).json()
    assert created["text"] == "I run marathons" and created["kind"] == "goal" and created["confidence"] == 0.8
    assert uuid.UUID(created["id"]) and "vector" not in created
    one = f"{user_path()}/{created['id']}"
    assert admin.get(one).json()["text"] == "I run marathons"
    patched = admin.patch(one, json={"text": "I run ultramarathons", "pinned": True}).json()
    assert patched["text"] == "I run ultramarathons" and patched["pinned"] is True and patched["kind"] == "goal"
    assert admin.get(one).json()["pinned"] is True
    assert admin.delete(one).json() == {"id": created["id"], "object": "memory", "deleted": True}
    assert_error(admin.get(one), 404, "id")
    assert_error(admin.delete(one), 404, "id")


def test_a_confidence_of_zero_is_kept(admin: httpx.Client) -> None:
    assert admin.post(user_path(), json={"text": "I might move to Oslo", "confidence": 0}).json()["confidence"] == 0


def test_tenants_and_users_are_listed(admin: httpx.Client, gateway: Gateway) -> None:
    add_memory(gateway, KEY, "hank", "I collect stamps")
    assert tenant_of(KEY) in admin.get("/tenants").json()["tenants"]
    assert "hank" in admin.get(f"/tenants/{tenant_of(KEY)}/users").json()["users"]
    assert_error(admin.get("/tenants/k_nobody/users"), 404, "tenant")


def test_lists_page_with_a_cursor_and_filter_by_kind(admin: httpx.Client, gateway: Gateway) -> None:
    for i in range(7):
        add_memory(gateway, KEY, "ivy", f"Note number {i}", kind="note" if i % 2 else "fact")
    seen, cursor = [], None
    while True:
        page = admin.get(user_path("ivy"), params={"limit": 3, **({"cursor": cursor} if cursor else {})}).json()
        assert len(page["memories"]) <= 3
        seen += [m["text"] for m in page["memories"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(f"Note number {i}" for i in range(7))
    notes = admin.get(user_path("ivy"), params={"kind": "note"}).json()["memories"]
    assert sorted(m["text"] for m in notes) == ["Note number 1", "Note number 3", "Note number 5"]


def test_search_ranks_the_relevant_memory_first(admin: httpx.Client, gateway: Gateway) -> None:
    # Every distractor shares a query keyword, and "My sister is a nurse" scores highest on keywords
    # alone: only the dense half of the hybrid ranking puts the answer first.
    query = "In which city does my sister live?"
    distractors = ["My sister is a nurse", "I live alone with two cats", "I would never live near an airport"]
    assert all(set(terms(text)) & set(terms(query)) for text in distractors)
    for text in [*distractors, "My sister has a flat in Toronto"]:
        add_memory(gateway, KEY, "jack", text)
    results = admin.post(f"{user_path('jack')}/search", json={"query": query, "top_k": 4}).json()["results"]
    assert [r["text"] for r in results][0] == "My sister has a flat in Toronto", results
    assert results[0]["score"] > results[1]["score"]


def test_search_sees_every_agents_memories_unless_asked_for_one_agents_view(admin: httpx.Client, gateway: Gateway) -> None:
    add_memory(gateway, KEY, "kim", "I am allergic to peanuts")
    add_memory(gateway, KEY, "kim", "I keep bees on the roof", agent_id="garden-bot")
    query = {"query": "Do I keep bees?", "top_k": 5}

    def found(**extra: str) -> set[str]:
        response = admin.post(f"{user_path('kim')}/search", json=query | extra)
        assert response.status_code == 200, response.text
        return {m["text"] for m in response.json()["results"]}

    assert found() == {"I am allergic to peanuts", "I keep bees on the roof"}
    assert found(agent_id="garden-bot") == {"I am allergic to peanuts", "I keep bees on the roof"}
    assert found(agent_id="chef-bot") == {"I am allergic to peanuts"}
    assert admin.post(f"{user_path('kim')}/search", json=query | {"agent_id": "bad agent"}).status_code == 400


@pytest.mark.parametrize(
    "method, path, body, status, param",
    [
        ("POST", user_path(), {}, 400, "text"),
        ("POST", user_path(), {"text": "   "}, 400, "text"),
        ("POST", user_path(), {"text": 5}, 400, "text"),
        ("POST", user_path(), {"text": "ok", "kind": "poem"}, 400, "kind"),
        ("POST", user_path(), {"text": "ok", "confidence": 7}, 400, "confidence"),
        ("POST", user_path(), {"text": "ok", "pinned": "yes"}, 400, "pinned"),
        ("POST", user_path() + "/search", {"top_k": 3}, 400, "query"),
        ("POST", user_path() + "/search", {"query": "x", "top_k": 0}, 400, "top_k"),
        ("POST", user_path("nobody-here") + "/search", {"query": "x"}, 404, "user"),
        ("GET", user_path("nobody-here"), None, 404, "user"),
        ("GET", user_path() + "?limit=0", None, 400, "limit"),
        ("GET", user_path() + "?limit=abc", None, 400, "limit"),
        ("GET", user_path() + "?kind=poem", None, 400, "kind"),
        ("GET", user_path() + "?cursor=not-a-cursor", None, 400, "cursor"),
        ("GET", user_path() + "/" + "6df229c1-30b4-4e66-a7ab-ad2d74bf219c", None, 404, "id"),
        ("GET", user_path() + "/bad%20id", None, 400, "memory id"),
        ("PATCH", user_path() + "/" + "1b4e28ba-2fa1-41d2-883f-0016d3cca427", {"text": "x"}, 404, "id"),
        ("GET", "/tenants/bad tenant/users", None, 400, "tenant"),
    ],
)
def test_bad_requests_get_clear_openai_shaped_errors(admin: httpx.Client, gateway: Gateway, method, path, body, status, param) -> None:
    add_memory(gateway, KEY, "gina", "I like tea")  # the user exists, so only the request itself is wrong
    assert_error(admin.request(method, path, json=body), status, param)


def test_invalid_json_and_empty_patches_are_refused(admin: httpx.Client, gateway: Gateway) -> None:
    mid = add_memory(gateway, KEY, "gina", "I like coffee")["id"]
    assert_error(admin.post(user_path(), content=b"{not json", headers={"Content-Type": "application/json"}), 400)
    assert_error(admin.post(user_path(), json=["a list"]), 400)
    assert_error(admin.patch(f"{user_path()}/{mid}", json={}), 400)
    assert_error(admin.patch(f"{user_path()}/{mid}", json={"tenant": "other"}), 400, "tenant")


def test_a_sql_injection_shaped_user_id_is_refused_and_leaks_nothing(admin: httpx.Client, gateway: Gateway) -> None:
    add_memory(gateway, KEY, "kim", "My PIN is secret")
    for path in (user_path("x' OR '1'='1"), user_path("x' OR '1'='1") + "/search", "/tenants/x' OR '1'='1/users"):
        response = admin.request("POST" if path.endswith("search") else "GET", path, json={"query": "PIN"} if path.endswith("search") else None)
        assert_error(response, 400)
        assert "secret" not in response.text
