"""TeamUp `oauth2/initiate` (InitiateFunction): its JSON, form or multipart body, its JSON or XML answer, its
`TeamUp-Provider-ID` owner header, and its field names in errors."""

from __future__ import annotations

import json
from typing import Annotated, Any
from urllib.parse import parse_qsl

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Query
from pydantic import Field, ValidationError

from ... import deployment
from ...api_edge import caller, checked_return_url, documented_answers, start
from ...api_models import ApiAnswer, ApiRequest
from ...errors import InvalidArgument, NotFound
from ...http_answers import JSON, invalid_argument_from
from ...request_limits import raw_body
from ...snapstart import register_before_snapshot
from .. import Dialect
from . import INITIATE

router = Router()
_OWNER_HEADER = "TeamUp-Provider-ID"


class TeamUpInitiateRequest(ApiRequest):
    """TeamUp `oauth2/initiate`."""

    calendar_source: str = Field(min_length=1, max_length=16, pattern=r"^[A-Z]+$")
    redirect_uri: str = Field(min_length=1, max_length=2048)


class TeamUpInitiateResponse(ApiAnswer):
    uri: str
    timeout_seconds: int


def _form_fields(content_type: str, body: bytes) -> dict[str, Any]:
    """TeamUp sends JSON, form-urlencoded or multipart bodies."""
    media_type = content_type.split(";")[0].strip().lower()
    if media_type == "application/x-www-form-urlencoded":
        return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body)))
    if media_type == "multipart/form-data":
        # Imported here: email.policy (the header parser) costs a cold start ~10 ms; only multipart bodies need it.
        from email.parser import BytesParser
        from email.policy import HTTP

        message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
        if not message.is_multipart():
            raise ValueError("malformed multipart body")
        fields: dict[str, Any] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if isinstance(name, str):
                fields[name] = part.get_content().strip() if part.get_content_maintype() == "text" else None
        return fields
    if media_type in ("application/json", "") or media_type.endswith("+json"):
        parsed = json.loads(body or b"null")
        if not isinstance(parsed, dict):
            raise ValueError("the body must be a JSON object")
        return parsed
    raise ValueError(f"unsupported content type {media_type}")


def _request() -> TeamUpInitiateRequest:
    event = router.current_event
    try:
        fields = _form_fields(event.headers.get("content-type", ""), raw_body(event.raw_event))
        return TeamUpInitiateRequest.model_validate(fields)
    except ValidationError as error:
        raise invalid_argument_from(error.errors()) from None
    except (ValueError, UnicodeDecodeError) as error:
        raise InvalidArgument.for_field(
            "body", str(error) if "unsupported" in str(error) else "malformed body"
        ) from None


@register_before_snapshot
def prime() -> None:
    """Before a SnapStart snapshot, as deployment.prime builds the shared models: built on first use otherwise."""
    for model in (TeamUpInitiateRequest, TeamUpInitiateResponse):
        model.model_rebuild()


@router.post(
    INITIATE,
    responses=documented_answers(
        403,
        404,
        428,
        ok={JSON: {"model": TeamUpInitiateResponse}, "application/xml": {"schema": {"type": "string"}}},
    ),
)
def teamup_initiate(response_format: Annotated[str, Query(alias="format", pattern="^(json|xml)$")] = "json"):
    request = _request()
    provider = next(
        (p for p in deployment.current().providers.values() if p.calendar_source == request.calendar_source), None
    )
    if provider is None:
        raise NotFound("Unknown calendar_source")
    owner = (router.current_event.headers.get(_OWNER_HEADER.lower()) or "").strip() or caller(router).clientId
    if len(owner) > 200:
        raise InvalidArgument.for_field(_OWNER_HEADER, "at most 200 characters")
    return_url = checked_return_url(request.redirect_uri, "redirect_uri")
    started = start(router, provider, owner, return_url, Dialect.TEAMUP, return_url_field="redirect_uri")
    answer = TeamUpInitiateResponse(uri=started.url, timeout_seconds=started.timeout_seconds)
    if response_format == "xml":
        from xml.sax.saxutils import escape  # imports urllib.request (~14 ms): only XML answers pay for it

        xml = (
            '<?xml version="1.0" encoding="UTF-8"?>'
            f"<root><uri>{escape(answer.uri)}</uri><timeout_seconds>{answer.timeout_seconds}</timeout_seconds></root>"
        )
        return Response(200, "application/xml", xml)
    return Response(200, JSON, answer.model_dump_json())
