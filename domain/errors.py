"""Errors the domain raises when a command cannot be carried out."""


class DomainError(Exception):
    """Base of every refusal by the domain; `code` is stable for API clients."""

    code = "domain_error"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class RuleViolation(DomainError):
    """A command breaks a business rule (the API answers 409)."""

    code = "rule_violation"


class NotFound(DomainError):
    """A command names something that does not exist (the API answers 404)."""

    code = "not_found"


class ProcessingRestricted(DomainError):
    """The person asked for their data's processing to be restricted (the API answers 423)."""

    code = "processing_restricted"


class VersionMismatch(DomainError):
    """The client's expected version (If-Match) is not the aggregate's current one."""

    code = "version_mismatch"

    def __init__(self, expected: int, current: int) -> None:
        super().__init__(f"expected version {expected}, but it is at version {current}")
        self.expected = expected
        self.current = current
