"""Domain errors. Each maps to one HTTP answer in the contract's shape, in one place (http_answers.api_error)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


class ApiError(Exception):
    """An error the management API answers with; the status and code are the contract's."""

    status: int = 500
    code: str = "INTERNAL"

    def __init_subclass__(cls, *, status: int, code: str, **kwargs: Any) -> None:
        """Each kind of error is declared with its status and code: `class NotFound(ApiError, status=404, ...)`."""
        super().__init_subclass__(**kwargs)
        cls.status, cls.code = status, code

    def __init__(
        self,
        description: str,
        *,
        application_code: str | None = None,
        field_violations: list[FieldViolation] | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(description)
        self.description = description
        self.application_code = application_code or self.code
        self.field_violations = field_violations or []
        self.retry_after = retry_after

    def body(self) -> dict:
        details: dict = {"applicationError": {"code": self.application_code, "description": self.description}}
        if self.field_violations:
            details["validationError"] = {
                "fieldViolations": [{"field": v.field, "description": v.description} for v in self.field_violations]
            }
        return {"message": self.description, "details": details}


class InvalidArgument(ApiError, status=400, code="INVALID_ARGUMENT"):
    def __init__(self, description: str, violations: list[FieldViolation] | None = None) -> None:
        super().__init__(description, field_violations=violations)

    @classmethod
    def for_field(cls, name: str, description: str) -> InvalidArgument:
        return cls(f"{name}: {description}", [FieldViolation(name, description)])


class Unauthenticated(ApiError, status=401, code="UNAUTHENTICATED"): ...


class PermissionDenied(ApiError, status=403, code="PERMISSION_DENIED"): ...


class NotFound(ApiError, status=404, code="NOT_FOUND"): ...


class PayloadTooLarge(ApiError, status=413, code="PAYLOAD_TOO_LARGE"): ...


class FailedPrecondition(ApiError, status=428, code="FAILED_PRECONDITION"): ...


class Internal(ApiError, status=500, code="INTERNAL"): ...


class Unavailable(ApiError, status=503, code="UNAVAILABLE"):
    def __init__(
        self, description: str = "A dependency is unavailable; try again shortly", retry_after: int = 5
    ) -> None:
        super().__init__(description, retry_after=retry_after)


class ReturnUrlNotAllowed(Exception):
    """The return URL is outside the API client's allowed prefixes (the edge names the field: 403)."""


class StorageUnavailable(Exception):
    """DynamoDB (or KMS) could not be reached or refused the call for capacity reasons."""


@dataclass
class AuthorizationFailure(Exception):
    """A connect attempt that ends at the return URL with an error (the contract's outcome table)."""

    error: str  # reject | unsupported | internal
    reason: str
    extra: dict = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.error}/{self.reason}"
