"""Adapters at the edge: clients of the ticket systems releases are verified against."""

from .jira import JiraClient, JiraIncompleteChangelog, adf_document, validate_issue_key
from .servicenow import ServiceNowClient, value_of
from .ticket_http import (
    TicketApiError,
    TicketBadRequest,
    TicketForbidden,
    TicketNotFound,
    TicketPermanentError,
    TicketThrottled,
    TicketTransientError,
    TicketUnauthorized,
    TicketUnavailable,
)

__all__ = [
    "JiraClient",
    "JiraIncompleteChangelog",
    "ServiceNowClient",
    "TicketApiError",
    "TicketBadRequest",
    "TicketForbidden",
    "TicketNotFound",
    "TicketPermanentError",
    "TicketThrottled",
    "TicketTransientError",
    "TicketUnauthorized",
    "TicketUnavailable",
    "adf_document",
    "validate_issue_key",
    "value_of",
]
