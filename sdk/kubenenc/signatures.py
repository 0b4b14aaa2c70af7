"""Task signatures published to the backend, so that what cannot import a task can still
check a call of it.

The operator never imports users' code, yet a TaskDefinition's ``arguments`` (the keyword
arguments of its scheduled calls) should be refused when they do not bind, not fail every
tick in a worker. So each worker publishes, when it starts, the signature of every task its
app registers: parameter names, which are required, and whether extra keywords are taken.
The operator reads it from the backend's policy store (name -> JSON text, namespaced like a
TaskDefinition's options, see :mod:`kubenenc.task_defaults`) and checks the arguments with
:func:`argument_problems`. A signature is data, never code: reading one runs nothing.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from kubenenc.task_defaults import scoped_name

SIGNATURE_PREFIX = "signature:"
"""Reserved prefix of the stored name of a task's signature (after the namespace)."""


class Parameter(BaseModel):
    """One parameter a call may pass by keyword."""

    model_config = ConfigDict(frozen=True)

    name: str
    required: bool


class Signature(BaseModel):
    """What a keyword-only call of a task may pass (positional-only parameters cannot be
    given by keyword, so a call that must pass one can never bind: ``by_position``)."""

    model_config = ConfigDict(frozen=True)

    parameters: tuple[Parameter, ...] = ()
    any_keyword: bool = Field(default=False, description="The function takes **kwargs.")
    by_position: tuple[str, ...] = Field(
        default=(), description="Required positional-only parameters."
    )


def signature_name(task: str, namespace: str | None) -> str:
    """The stored name of task id ``task``'s signature, seen from ``namespace``."""
    return scoped_name(f"{SIGNATURE_PREFIX}{task}", namespace)


def describe(func: Callable[..., Any]) -> Signature:
    """The :class:`Signature` of ``func``."""
    params: list[Parameter] = []
    any_keyword = False
    by_position: list[str] = []
    for p in inspect.signature(func).parameters.values():
        required = p.default is inspect.Parameter.empty
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            any_keyword = True
        elif p.kind is inspect.Parameter.POSITIONAL_ONLY:
            if required:
                by_position.append(p.name)
        elif p.kind is not inspect.Parameter.VAR_POSITIONAL:
            params.append(Parameter(name=p.name, required=required))
    return Signature(
        parameters=tuple(params), any_keyword=any_keyword, by_position=tuple(by_position)
    )


def argument_problems(signature: Signature, arguments: Mapping[str, Any]) -> list[str]:
    """Why keyword ``arguments`` would not bind to ``signature`` (empty when they would)."""
    known = {p.name for p in signature.parameters}
    problems = []
    unknown = sorted(set(arguments) - known)
    if unknown and not signature.any_keyword:
        problems.append(f"unknown argument(s) {', '.join(unknown)}")
    missing = [p.name for p in signature.parameters if p.required and p.name not in arguments]
    if missing:
        problems.append(f"missing required argument(s) {', '.join(missing)}")
    if signature.by_position:
        problems.append(
            f"positional-only parameter(s) {', '.join(signature.by_position)} cannot be given "
            "by keyword"
        )
    if problems:
        takes = ", ".join(
            f"{p.name}{'' if p.required else '=...'}" for p in signature.parameters
        ) + (", **kwargs" if signature.any_keyword else "")
        problems.append(f"the task takes ({takes})")
    return problems
