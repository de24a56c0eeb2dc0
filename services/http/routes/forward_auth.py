"""``GET /v1/forward-auth``: verify for gateways (nginx ``auth_request``, Traefik ForwardAuth, Caddy
``forward_auth``, Envoy ext_authz).

The end client's key comes from the original request's ``Authorization: Bearer`` or ``x-api-key``; the
gateway authenticates itself with ``X-Keyledger-Caller: <verify credential>``. What is asked comes from
the gateway's configuration: the auth URI's query (``?scope=read:data&website_id=site-a&data=error_data``)
or, when the URI has no ``scope``, the ``X-Keyledger-Scope``/``-Website-Id``/``-Data`` headers — never a
mix, so a client cannot add a header to a route configured by query. Envoy appends the original path to
the auth path (``/v1/forward-auth/<original path>``): there the query is the client's, so only headers
count. The same verdict as ``POST /v1/verify`` (same codes, usage event and rate limit), answered as a
status: 200 with ``X-Keyledger-*`` identity headers, else 401/403/429 (503) with the error body.

The audit trail's request line and client address come only from headers that every documented gateway
configuration sets itself, overwriting the client's: ``X-Forwarded-Method``, ``X-Forwarded-Uri`` and the
last ``X-Forwarded-For`` entry (Envoy: the check's own method and path). Gateways pass the client's other
headers on, so ``X-Original-*``, ``X-Real-IP`` and ``Forwarded`` are never read, and a repeated
``X-Forwarded-Method``/``-Uri`` (a gateway that sets one leaves exactly one) is refused.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, Response, get, route
from litestar.datastructures import ResponseHeader
from litestar.di import NamedDependency
from litestar.enums import HttpMethod
from litestar.params import HeaderParameter, PathParameter, QueryParameter, SkipValidation

from keyledger.services.http.auth import Gate, peer_address, presented_key, user_agent_of
from keyledger.services.http.errors import ApiError, auth_required, error_responses, forbidden
from keyledger.services.http.ratelimit_headers import DECISION_STATE_KEY
from keyledger.services.http.schemas import VerifyAnswer
from keyledger.services.verify.answer import answer
from keyledger.services.verify.call import MAX_PRESENTED_LENGTH
from keyledger.services.verify.credits import CreditDecision
from keyledger.services.verify.throttles import RateDecision
from keyledger.services.verify.verifier import Verdict

CALLER_HEADER = "x-keyledger-caller"
ASKED_HEADERS = {"scope": "x-keyledger-scope", "website_id": "x-keyledger-website-id", "data": "x-keyledger-data"}
_METHODS: list[HttpMethod] = [HttpMethod.GET, HttpMethod.POST, HttpMethod.PUT, HttpMethod.PATCH, HttpMethod.DELETE]
_REFUSED = {"MALFORMED": 401, "NOT_FOUND": 401, "REVOKED": 401, "EXPIRED": 401, "FORBIDDEN": 403,
            "RATE_LIMITED": 429, "USAGE_EXCEEDED": 429, "UNAVAILABLE": 503}
CREDITS_HEADER = "X-Keyledger-Credits-Remaining"


def _asked(request: Request[Any, Any, Any], by_path: bool) -> dict[str, str | None]:
    """scope, website_id and data: from the query when it names a scope (and is the gateway's), else headers
    (checked, as every transport's, by ``Gate.call``)."""
    query = request.query_params
    use_query = not by_path and "scope" in query
    return {name: (query.get(name) if use_query else request.headers.get(header)) or None
            for name, header in ASKED_HEADERS.items()}


def gateway_header(request: Request[Any, Any, Any], name: str) -> str:
    """The value of ``name``, a header the gateway sets itself (replacing any the client sent); "" when
    absent. Repeated, it cannot have been set by the gateway, so the request is refused (400)."""
    values = request.headers.getall(name, [])
    if len(values) > 1:
        raise ApiError(400, "VALIDATION_ERROR", f"{name} is repeated: the gateway must set it, not pass it on")
    return values[0].strip() if values else ""


def original_uri(request: Request[Any, Any, Any], by_path: bool) -> str:
    """The path the end client asked for (``X-Forwarded-Uri``; Envoy: the check's own path after the auth
    path), without its query (which may carry secrets)."""
    if by_path:
        uri = request.scope["path"].removeprefix("/v1/forward-auth") or "/"
    else:
        uri = gateway_header(request, "X-Forwarded-Uri")
    return uri.split("?", 1)[0][:160]


def original_method(request: Request[Any, Any, Any], by_path: bool) -> str:
    """The end client's method (``X-Forwarded-Method``; Envoy sends it as the check's own method)."""
    if by_path:
        return str(request.method)
    return gateway_header(request, "X-Forwarded-Method")[:16]


def client_ip(request: Request[Any, Any, Any]) -> str | None:
    """The end client's address as the gateway saw it: the last ``X-Forwarded-For`` entry (repeated headers
    read as one list), the one the gateway itself set or appended; entries before it are the client's own
    claims. No other header (``X-Real-IP``, ``Forwarded``) is read: gateways pass the client's on."""
    forwarded = ",".join(request.headers.getall("x-forwarded-for", []))
    return forwarded.rsplit(",", 1)[-1].strip() or None


def _allowed(body: VerifyAnswer) -> Response[VerifyAnswer]:
    headers = {"X-Keyledger-Key-Id": body.key_id or "", "X-Keyledger-Organization-Id": body.organization_id or "",
               "X-Keyledger-Scopes": ",".join(body.scopes)}
    if body.credits is not None:
        headers[CREDITS_HEADER] = str(body.credits.remaining)
    return Response(body, status_code=200, headers=headers)


def _refusal(request: Request[Any, Any, Any], verdict: Verdict, credits: CreditDecision | None = None) -> ApiError:
    """The error for a refused verdict; a 429 always carries ``Retry-After`` (the key's own refused
    decision adds it on the way out; the argon2 bounds have none, so 1 s)."""
    status = _REFUSED[verdict.code]
    if status == 401:
        return auth_required()
    if status == 403:
        return forbidden()
    if verdict.code == "USAGE_EXCEEDED":  # no Retry-After: credits come back at a refill or a new setting
        remaining = credits.remaining if credits is not None else 0
        return ApiError(429, "USAGE_EXCEEDED", verdict.reason, headers={CREDITS_HEADER: str(remaining)})
    if status == 429:
        attached = request.scope.get("state", {}).get(DECISION_STATE_KEY)
        has_retry = isinstance(attached, RateDecision) and not attached.allowed
        return ApiError(429, "RATE_LIMITED", "Rate limit exceeded", headers=None if has_retry else {"Retry-After": "1"})
    return ApiError(503, "UNAVAILABLE", "this replica cannot confirm its keys are current; retry",
                    headers={"Retry-After": "1"})


WebsiteQuery = Annotated[str | None, QueryParameter(description="the website id, from the gateway's auth URI")]
_SET_OR_CLEAR = "when the auth URI has no ?scope= (the gateway must set or clear it: clients can send it too)"
ScopeHeader = Annotated[str | None, HeaderParameter(name="X-Keyledger-Scope",
                                                    description=f"the scope, {_SET_OR_CLEAR}")]
WebsiteHeader = Annotated[str | None, HeaderParameter(name="X-Keyledger-Website-Id",
                                                      description=f"the website id, {_SET_OR_CLEAR}")]
DataHeader = Annotated[str | None, HeaderParameter(name="X-Keyledger-Data",
                                                   description=f"the data kind, {_SET_OR_CLEAR}")]
ScopeQuery = Annotated[str | None, QueryParameter(name="scope", description="the scope, from the gateway's auth URI "
                                                                           "(then X-Keyledger-* headers are ignored)")]
DataQuery = Annotated[str | None, QueryParameter(name="data", description="the data kind, from the gateway's auth URI")]
IDENTITY = [ResponseHeader(name=name, description=text, documentation_only=True) for name, text in (
    ("X-Keyledger-Key-Id", "the verified key's id"), ("X-Keyledger-Organization-Id", "its organization (empty: none)"),
    ("X-Keyledger-Scopes", "the scopes it holds, comma-separated"), ("X-RateLimit-Limit", "requests per window"),
    ("X-RateLimit-Remaining", "left in this window"), ("X-RateLimit-Reset", "window end, Unix seconds"),
    (CREDITS_HEADER, "the key's usage credits left (keys with credits only)"))]


@get("/v1/forward-auth", responses=error_responses(400, 401, 403, 429, 503), response_headers=IDENTITY,
     security=[{"gatewayCaller": []}, {}])
async def forward_auth(request: Request[Any, Any, Any], gate: NamedDependency[SkipValidation[Gate]],
                       scope_name: ScopeQuery = None, website_id: WebsiteQuery = None, data_kind: DataQuery = None,
                       scope_header: ScopeHeader = None, website_header: WebsiteHeader = None,
                       data_header: DataHeader = None) -> Response[VerifyAnswer]:
    """For nginx ``auth_request``, Traefik ForwardAuth and Caddy ``forward_auth``: 200 with ``X-Keyledger-Key-Id``,
    ``X-Keyledger-Organization-Id``, ``X-Keyledger-Scopes`` and ``X-RateLimit-*`` when the end client's key
    (its ``Authorization: Bearer`` or ``x-api-key``) may do the configured scope; else 401/403/429 (with
    ``Retry-After``) and the error body. The gateway authenticates with ``X-Keyledger-Caller``; the original
    method, URI and client come only from ``X-Forwarded-Method``, ``X-Forwarded-Uri`` and the last
    ``X-Forwarded-For`` entry, which the gateway must set itself. (The parameters are read from the request
    in one place, :func:`_asked`; they are declared here for the OpenAPI document.)"""
    return await _forward_auth(request, gate, by_path=False)


@route("/v1/forward-auth/{original:path}", http_method=_METHODS, include_in_schema=False)
async def forward_auth_by_path(request: Request[Any, Any, Any], gate: NamedDependency[SkipValidation[Gate]],
                               original: Annotated[str, PathParameter()]) -> Response[VerifyAnswer]:
    """Envoy ext_authz: the original method, and the original path appended to the auth path."""
    return await _forward_auth(request, gate, by_path=True)


async def _forward_auth(request: Request[Any, Any, Any], gate: Gate, by_path: bool) -> Response[VerifyAnswer]:
    caller = await gate.identify_caller(request, credential_header=CALLER_HEADER)
    asked = _asked(request, by_path)
    scope = asked["scope"]
    if scope is None:
        raise ApiError(400, "VALIDATION_ERROR", "forward-auth needs a scope: ?scope= or X-Keyledger-Scope")
    action = f"forward-auth {original_method(request, by_path)} {original_uri(request, by_path)}".rstrip()
    key = presented_key(request)
    call = gate.call(request, key=key[:MAX_PRESENTED_LENGTH] if key is not None else None, scope=scope,
                     website_id=asked["website_id"], data=asked["data"], ip=client_ip(request),
                     user_agent=user_agent_of(request), caller=caller, action=action, caller_ip=peer_address(request))
    if call.key is None:
        await gate.flow.missing(call)
        raise auth_required()
    verdict, decision, credits, owner = await gate.verify(request, call)
    if verdict.valid:
        return _allowed(answer(verdict, decision, credits, owner))
    raise _refusal(request, verdict, credits)


FORWARD_AUTH_ROUTES = [forward_auth, forward_auth_by_path]
