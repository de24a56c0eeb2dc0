"""The SDK's response models against a real server's ``/schema``: a field the server answers with and the
model lacks (or a field the model requires and the server may leave out) fails here, not in a user's code."""

from __future__ import annotations

from typing import Any

import httpx
import msgspec

from keyledger_client import models
from tests.support.server import ApiServer

# SDK model -> the server's schema component it decodes
ANSWERS: dict[type[msgspec.Struct], str] = {
    models.Access: "Access",
    models.RateLimit: "RateLimitState",
    models.VerifyResult: "VerifyAnswer",
    models.Key: "KeyWithLastUse",
    models.KeyWithSecret: "KeyWithSecret",
    models.KeyPage: "KeyPage",
    models.AuditRecord: "AuditRecord",
    models.AuditPage: "AuditPage",
    models.ErrorBody: "ErrorBody",
    models.ImportReport: "ImportReport",
    models.ImportLineResult: "ImportLineResult",
    models.BulkResult: "BulkResponse",
    models.BulkOutcome: "BulkOutcome",
    models.Credits: "KeyCredits",
    models.Refill: "CreditsRefill",
    models.CreditsLeft: "CreditsState",
    models.Owner: "Owner",
    models.OwnerLeft: "OwnerState",
    models.UsageSeries: "UsageSeries",
    models.UsageBucket: "UsageBucket",
}


def test_every_model_holds_every_field_the_server_answers_with(keyledger_server: ApiServer) -> None:
    document = httpx.get(f"{keyledger_server.url}/schema/openapi.json", timeout=10).json()
    components: dict[str, Any] = document["components"]["schemas"]
    problems = [problem for model, name in ANSWERS.items() for problem in mismatches(model, name, components)]
    assert problems == []


def mismatches(model: type[msgspec.Struct], name: str, components: dict[str, Any]) -> list[str]:
    """What keeps ``model`` from decoding every answer of the server's component ``name``."""
    schema = components.get(name)
    if schema is None:
        return [f"no component {name!r} in /schema: {sorted(components)}"]
    served, served_required = set(schema.get("properties", {})), set(schema.get("required", []))
    info = msgspec.inspect.type_info(model)
    assert isinstance(info, msgspec.inspect.StructType)
    fields = {field.encode_name for field in info.fields}
    required = {field.encode_name for field in info.fields if field.required}
    return ([f"{model.__name__} lacks {field!r}, which the server's {name} has" for field in sorted(served - fields)]
            + [f"{model.__name__} requires {field!r}, which the server's {name} may leave out"
               for field in sorted(required - served_required)])
