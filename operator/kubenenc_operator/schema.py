"""What every custom resource model shares: the base model, CEL rules, name patterns.

Kept apart from :mod:`kubenenc_operator.models` so that the pod-template models
(:mod:`kubenenc_operator.podtemplate`) and the resources' specs build on the same base
without importing each other.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
DOTTED = rf"{IDENT}(\\.{IDENT})*"
IMPORT_PATH = rf"^{DOTTED}:{DOTTED}$"
"""``module.sub:attr`` (CEL string literal form: backslashes doubled)."""
APP_NAME = r"^[A-Za-z0-9._-]+$"
"""An App's name (the rule of :func:`kubenenc.scope.check_name`)."""
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


def cel(*rules: tuple[str, str]) -> dict[str, Any]:
    """``json_schema_extra`` attaching CEL rules: ``(rule, message)`` pairs.

    A message written as a CEL string expression (starting with a quote) becomes a
    ``messageExpression`` so that it can quote the offending value; use that only with
    strings that have a ``maxLength`` (the API server bounds the cost of every rule and
    message). Every message says what to change.
    """
    return {
        "x-kubernetes-validations": [
            {"rule": rule, "messageExpression": message}
            if message.startswith("'")
            else {"rule": rule, "message": message}
            for rule, message in rules
        ]
    }


class SpecModel(BaseModel):
    """camelCase on the wire, unknown fields refused, immutable."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


PRESERVE: dict[str, Any] = {"x-kubernetes-preserve-unknown-fields": True}
"""``json_schema_extra`` of a free-form object that the API server keeps as given (Kubernetes'
own types that this schema does not spell out, such as a volume's source)."""
