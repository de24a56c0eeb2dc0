"""Leak reports: ``POST /v1/leaks/github`` (GitHub's secret-scanning partner contract: a signed batch, answered
with one feedback entry per token) and ``POST /v1/leaks`` (anyone who holds a secret may report it: no
authentication, always ``202 {"received": n}``, checked after the answer so the answer tells nothing).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, Response, post
from litestar.di import NamedDependency
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIType, Operation, RequestBody, Schema
from litestar.params import HeaderParameter, JSONBody

from keyledger.domain.leaks import feedback
from keyledger.services.http.auth import Gate
from keyledger.services.http.errors import ApiError, auth_required, error_responses
from keyledger.services.leaks.github import IDENTIFIER_HEADER, SIGNATURE_HEADER
from keyledger.services.leaks.intake import LeakIntake
from keyledger.services.leaks.response import Report

MAX_TOKENS = 100  # per public report


class GitHubReport(msgspec.Struct, frozen=True):
    """One token GitHub found: where (``url``), in what (``source``: content, commit, pull_request...)."""

    token: str
    type: str = ""
    url: str = ""
    source: str = ""


class GitHubFeedback(msgspec.Struct, frozen=True):
    """GitHub's feedback for one reported token: its SHA-256 (never the token) and the label."""

    token_hash: str
    token_type: str
    label: Literal["true_positive", "false_positive"]


class LeakReport(msgspec.Struct, frozen=True, kw_only=True):
    """``tokens`` someone found (at most 100), where (``url``) and who they are (``reporter``). ``source``:
    ``scanner`` when ``keyledger leaks scan --report`` sends it."""

    tokens: Annotated[list[Any], msgspec.Meta(max_length=MAX_TOKENS)]
    url: Annotated[str, msgspec.Meta(max_length=2000)] | None = None
    reporter: Annotated[str, msgspec.Meta(max_length=2000)] | None = None
    source: Literal["public", "scanner"] = "public"


class Received(msgspec.Struct, frozen=True):
    """How many tokens the report held (whatever they are)."""

    received: int


_github_reports = msgspec.json.Decoder(list[GitHubReport])
_TEXT = Schema(type=OpenAPIType.STRING)
_GITHUB_BODY = RequestBody(required=True, description="The tokens GitHub found, signed as a whole (read raw)",
                           content={"application/json": OpenAPIMediaType(schema=Schema(
                               type=OpenAPIType.ARRAY, items=Schema(
                                   type=OpenAPIType.OBJECT, required=["token"],
                                   properties={"token": _TEXT, "type": _TEXT, "url": _TEXT, "source": _TEXT})))})


@dataclass
class _GitHubOperation(Operation):
    """The partner endpoint's body in the schema: the handler reads it raw (its signature covers the bytes)."""

    def __post_init__(self) -> None:
        self.request_body = _GITHUB_BODY


@post("/v1/leaks/github", status_code=200, responses=error_responses(400, 401, 413, 429, 503),
      operation_class=_GitHubOperation)
async def github_leaks(
    request: Request[Any, Any, Any], leaks: NamedDependency[LeakIntake], gate: NamedDependency[Gate],
    identifier: Annotated[str | None, HeaderParameter(name=IDENTIFIER_HEADER, required=False)] = None,
    signature: Annotated[str | None, HeaderParameter(name=SIGNATURE_HEADER, required=False)] = None,
) -> list[GitHubFeedback]:
    """GitHub's secret-scanning partner endpoint. The body ``[{"token", "type", "url", "source"}]`` must be
    signed by one of GitHub's published keys (``Github-Public-Key-Identifier``, ``Github-Public-Key-Signature``:
    base64 DER ECDSA P-256 over the raw body with SHA-256), else 401 and nothing happens. Answers one entry per
    token: ``{token_hash, token_type, label: true_positive | false_positive}``; a true positive is a live key
    (or verify credential) of this deployment, and it has been responded to (revoked, under the default policy,
    on every replica) before this answers."""
    body = await request.body()
    if not await leaks.github.verify(identifier, signature, body):
        raise auth_required("missing or invalid GitHub secret-scanning signature")
    try:
        reports = _github_reports.decode(body)
    except msgspec.DecodeError as exc:
        raise ApiError(400, "VALIDATION_ERROR", f"body must be a JSON array of {{token, type, url, source}}: "
                                                f"{str(exc)[:200]}") from None
    client = gate.address_of(request) or ""
    answers: list[GitHubFeedback] = []
    for entry in reports:
        (confirmed,) = await leaks.confirm_all(Report(tokens=(entry.token,), source="github", url=entry.url,
                                                      reporter=f"GitHub ({entry.source})" if entry.source
                                                      else "GitHub", client=client))
        answers.append(msgspec.convert(feedback(entry.token, entry.type, confirmed), GitHubFeedback))
    return answers


@post("/v1/leaks", status_code=202, responses=error_responses(400, 413, 429, 503))
async def report_leaks(data: JSONBody[LeakReport], request: Request[Any, Any, Any], leaks: NamedDependency[LeakIntake],
                       gate: NamedDependency[Gate]) -> Response[Received]:
    """Report leaked keyledger tokens (no authentication: holding a secret is the authority to kill it).
    Always ``202 {"received": n}`` for up to 100 tokens, whatever they are; each well-formed one is then
    checked with the same bounded argon2 work as verify, and a live one is responded to as
    ``KEYLEDGER_LEAK_POLICY`` says. ``KEYLEDGER_LEAK_REPORTS_PER_MINUTE`` (10) reports per client address and
    minute, then 429."""
    client = gate.address_of(request) or "unknown"
    refusal = leaks.admit(client)
    if refusal is not None:
        raise ApiError(429, "RATE_LIMITED", "too many leak reports from this address; retry later",
                       headers=refusal.headers())
    tokens = tuple(value for value in data.tokens if isinstance(value, str))
    leaks.enqueue(Report(tokens=tokens, source=data.source, url=data.url or "", reporter=data.reporter or "",
                         client=client))
    return Response(Received(received=len(data.tokens)), status_code=202)


LEAK_ROUTES = [github_leaks, report_leaks]
