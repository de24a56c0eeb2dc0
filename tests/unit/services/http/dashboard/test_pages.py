"""The dashboard's pages and forms over the in-memory API: sessions, CSRF, the same access rules as the
API, and what each page shows."""

from __future__ import annotations

import re
from typing import Any

import httpx
from litestar import Litestar
from litestar.testing import AsyncTestClient

from keyledger.domain.access import AccessEntry
from keyledger.services.http.components import Components
from tests.support.asgi import csrf_of, sign_in

Client = AsyncTestClient[Litestar]
async def post_form(client: Client, page_path: str, action: str, **fields: Any) -> httpx.Response:
    page = await client.get(page_path)
    assert page.status_code == 200, page.text
    return await client.post(action, data={"csrf_token": csrf_of(page), **fields})


async def test_pages_need_a_session_and_the_cookie_never_holds_the_key(client: Client, admin: str) -> None:
    assert (await client.get("/dashboard/keys")).headers["location"] == "/dashboard/sign-in"
    page = await client.get("/dashboard/sign-in")
    cookie = page.headers["set-cookie"]
    assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower() and "Path=/dashboard" in cookie
    assert "Secure" not in cookie  # plain HTTP here; over TLS the cookie is Secure
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    assert page.headers["cache-control"] == "no-store" and page.headers["x-frame-options"] == "DENY"
    before = client.cookies.get("keyledger_session")
    signed = await client.post("/dashboard/sign-in", data={"api_key": admin, "csrf_token": csrf_of(page)})
    assert signed.status_code == 303 and signed.headers["location"] == "/dashboard/keys"
    after = client.cookies.get("keyledger_session")
    assert after and after != before and admin not in signed.headers["set-cookie"]  # a fresh id, never the key
    listing = await client.get("/dashboard/keys")
    assert listing.status_code == 200 and "<h1>API Keys</h1>" in listing.text and admin not in listing.text


async def test_sign_in_refuses_keys_without_admin_scope_and_forged_forms(client: Client, admin: str,
                                                                        components: Components) -> None:
    reader = await components.keys.create("reader", access=(AccessEntry(resource="global", scopes=("read:data",)),))
    refused = await sign_in(client, reader.token)
    assert refused.status_code == 403 and "cannot sign in" in refused.text
    assert (await sign_in(client, "kl_nonsense")).status_code == 401
    forged = await client.post("/dashboard/sign-in", data={"api_key": admin, "csrf_token": "guess"})
    assert forged.status_code == 400 and "expired" in forged.text
    assert (await client.get("/dashboard/keys")).status_code == 303


async def test_create_shows_the_secret_once_and_uses_the_key_service(client: Client, admin: str,
                                                                     components: Components) -> None:
    await sign_in(client, admin)
    made = await post_form(client, "/dashboard/keys/new", "/dashboard/keys", name="site reader",
                           description="reads site-a", tags="team:web, prod", organization_id="org-1",
                           access_1_resource="website", access_1_id="site-a", access_1_scopes="read:data",
                           access_2_resource="", access_2_id="")
    assert made.status_code == 200, made.text
    secret = re.search(r'id="secret" name="secret" value="([^"]+)" readonly', made.text)
    assert secret and secret.group(1).startswith("kl_") and "will not be shown again" in made.text
    assert '"scope": "read:data", "website_id": "site-a"' in made.text.replace("&#34;", '"')  # a verify example
    assert 'data-confirm-leave=' in made.text
    state = next(s for s in components.cache.states() if s.name == "site reader")
    assert (state.description, state.tags, state.organization_id) == ("reads site-a", ("team:web", "prod"), "org-1")
    assert state.access == (AccessEntry(resource="website", id="site-a", scopes=("read:data",)),)
    detail = await client.get(f"/dashboard/keys/{state.key_id}")
    assert "read:data on website site-a" in detail.text and secret.group(1) not in detail.text
    assert ">Active<" in detail.text and "Created as" in detail.text


async def test_forms_without_the_session_csrf_token_change_nothing(client: Client, admin: str,
                                                                   components: Components) -> None:
    await sign_in(client, admin)
    before = len(components.cache.states())
    forged = await client.post("/dashboard/keys", data={"name": "forged", "csrf_token": "x"})
    assert forged.status_code == 403 and len(components.cache.states()) == before


async def test_invalid_input_is_shown_beside_the_field(client: Client, admin: str, components: Components) -> None:
    await sign_in(client, admin)
    page = await post_form(client, "/dashboard/keys/new", "/dashboard/keys", name=" ", rate_limit="lots")
    assert page.status_code == 400 and 'id="rate_limit-error"' in page.text
    page = await post_form(client, "/dashboard/keys/new", "/dashboard/keys", name="x", scope="read:all")
    assert page.status_code == 400 and "unknown scope" in page.text and 'id="scopes-error"' in page.text
    page = await post_form(client, "/dashboard/keys/new", "/dashboard/keys", name="x", tags="Bad Tag!")
    assert page.status_code == 400 and 'id="tags-error"' in page.text
    assert [s.name for s in components.cache.states()] == ["admin"]


async def test_revoking_or_rotating_the_signed_in_key_ends_its_sessions(client: Client, admin: str,
                                                                        components: Components) -> None:
    await sign_in(client, admin)
    admin_id = components.cache.states()[0].key_id
    await components.keys.rotate(admin_id, grace_seconds=3600)  # the old secret still verifies, yet:
    ended = await client.get("/dashboard/keys")
    assert ended.status_code == 303 and ended.headers["location"] == "/dashboard/sign-in?why=rotated"
    assert (await client.get("/dashboard/keys")).status_code == 303
    other = await components.keys.create("second admin",
                                         access=(AccessEntry(resource="global", scopes=("admin:apikeys",)),))
    await sign_in(client, other.token)
    assert (await client.get("/dashboard/keys")).status_code == 200
    await components.keys.revoke(other.state.key_id)
    assert (await client.get("/dashboard/keys")).headers["location"] == "/dashboard/sign-in?why=ended"


async def test_an_organization_admin_sees_only_its_organization(client: Client, admin: str,
                                                                components: Components) -> None:
    theirs = await components.keys.create("their key", organization_id="org-2")
    ours = await components.keys.create("our key", organization_id="org-1")
    org_admin = await components.keys.create("org-1 admin", organization_id="org-1",
                                             access=(AccessEntry(resource="global", scopes=("admin:apikeys",)),))
    await sign_in(client, org_admin.token)
    listing = await client.get("/dashboard/keys")
    assert "our key" in listing.text and "their key" not in listing.text and 'id="organization_id"' not in listing.text
    assert (await client.get(f"/dashboard/keys/{theirs.state.key_id}")).status_code == 404
    odd = await client.get(f"/dashboard/keys/{ours.state.key_id}", params={"range": "1y"})
    assert odd.status_code == 400 and "<h1>" in odd.text  # a page, not the API's JSON
    assert (await client.get(f"/dashboard/keys/{theirs.state.key_id}/revoke")).status_code == 404
    assert (await client.get(f"/dashboard/keys/{ours.state.key_id}")).status_code == 200
    made = await post_form(client, "/dashboard/keys/new", "/dashboard/keys", name="new one", organization_id="org-2",
                           scope="read:data")
    assert made.status_code == 403  # org-1's admin holds no read:data to grant
    made = await post_form(client, "/dashboard/keys/new", "/dashboard/keys", name="new one", organization_id="org-2")
    assert made.status_code == 200
    assert next(s for s in components.cache.states() if s.name == "new one").organization_id == "org-1"
    assert (await client.get("/dashboard/audit/export?format=csv")).status_code == 403


async def test_a_stale_edit_shows_the_conflict_and_the_current_values(client: Client, admin: str,
                                                                      components: Components) -> None:
    made = await components.keys.create("editable", description="first")
    await sign_in(client, admin)
    path = f"/dashboard/keys/{made.state.key_id}"
    form = await client.get(f"{path}/edit")
    await components.keys.change_access(made.state.key_id, description="changed elsewhere")
    stale = await client.post(f"{path}/edit", data={"csrf_token": csrf_of(form), "version": "1", "name": "editable",
                                                     "description": "mine", "tags": ""})
    assert stale.status_code == 409 and "Conflict" in stale.text and "changed elsewhere" in stale.text
    assert components.cache.get(made.state.key_id).description == "changed elsewhere"  # type: ignore[union-attr]
    again = await client.post(f"{path}/edit", data={"csrf_token": csrf_of(stale), "version": "2", "name": "editable",
                                                    "description": "mine", "tags": "x"})
    assert again.status_code == 303
    assert components.cache.get(made.state.key_id).description == "mine"  # type: ignore[union-attr]


async def test_revoke_needs_the_typed_name_and_rotate_a_grace_choice(client: Client, admin: str,
                                                                     components: Components) -> None:
    made = await components.keys.create("doomed")
    await sign_in(client, admin)
    path = f"/dashboard/keys/{made.state.key_id}"
    wrong = await post_form(client, f"{path}/revoke", f"{path}/revoke", confirm_name="doome", version="1")
    assert wrong.status_code == 400 and components.cache.get(made.state.key_id).revoked_at is None  # type: ignore
    odd = await post_form(client, f"{path}/rotate", f"{path}/rotate", grace_seconds="31", version="1")
    assert odd.status_code == 400
    rotated = await post_form(client, f"{path}/rotate", f"{path}/rotate", grace_seconds="900", version="1")
    assert rotated.status_code == 200 and "old secret keeps working until" in rotated.text
    done = await post_form(client, f"{path}/revoke", f"{path}/revoke", confirm_name="doomed", version="2",
                           reason="leaked")
    assert done.status_code == 303
    detail = await client.get(path)
    assert ">Revoked<" in detail.text and "leaked" in detail.text and '>Rotate</button>' not in detail.text


async def test_as_of_shows_what_the_key_could_do_then(client: Client, admin: str, components: Components,
                                                      clock: Any) -> None:
    from datetime import timedelta
    made = await components.keys.create("timed", access=(AccessEntry(resource="global", scopes=("read:data",)),))
    created = clock()
    clock.advance(timedelta(hours=1))
    await components.keys.revoke(made.state.key_id)
    await sign_in(client, admin)
    at = (created + timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M")
    page = await client.get(f"/dashboard/keys/{made.state.key_id}", params={"as_of": at})
    assert "the key was <strong>Active</strong>" in page.text and "read:data on every resource" in page.text
    before = (created - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M")
    assert "did not exist yet" in (await client.get(f"/dashboard/keys/{made.state.key_id}",
                                                   params={"as_of": before})).text


async def test_sign_out_ends_the_session(client: Client, admin: str) -> None:
    await sign_in(client, admin)
    keys = await client.get("/dashboard/keys")
    out = await client.post("/dashboard/sign-out", data={"csrf_token": csrf_of(keys)})
    assert out.status_code == 303 and out.headers["location"] == "/dashboard/sign-in?why=out"
    assert (await client.get("/dashboard/keys")).status_code == 303


async def test_the_keys_list_searches_filters_and_pages(client: Client, admin: str, components: Components,
                                                        clock: Any) -> None:
    from datetime import timedelta
    made = []
    for i in range(30):
        clock.advance(timedelta(seconds=1))
        made.append(await components.keys.create(
            f"key {i:02d}", organization_id="org-a" if i % 2 else "org-b", tags=("batch",) if i < 5 else (),
            access=(AccessEntry(resource="global", scopes=("read:data",)),) if i < 3 else ()))
    await components.keys.revoke(made[7].state.key_id)
    await sign_in(client, admin)
    first = (await client.get("/dashboard/keys")).text
    assert "31 keys, page 1 of 2" in first and "key 29" in first and "key 00" not in first  # newest first
    assert "key 00" in (await client.get("/dashboard/keys", params={"page": 2})).text
    by_start = (await client.get("/dashboard/keys", params={"q": made[3].state.start})).text
    assert "1 key<" in by_start and "key 03" in by_start
    assert "5 keys" in (await client.get("/dashboard/keys", params={"q": "batch"})).text
    revoked = (await client.get("/dashboard/keys", params={"status": "revoked"})).text
    assert "1 key<" in revoked and "key 07" in revoked and ">Revoked<" in revoked
    scoped = (await client.get("/dashboard/keys", params={"scope": "read:data", "org": "org-b"})).text
    assert "2 keys" in scoped and "key 00" in scoped and "key 02" in scoped
