"""Concurrency policies and the keys they are enforced on.

A :class:`ConcurrencyPolicy` is a pydantic model because the same model is the spec of the
``ConcurrencyPolicy`` custom resource on Kubernetes. Keys are computed here, once, so every
backend compares the same strings: a backend only counts and compares keys, it never builds
them.
"""

from __future__ import annotations

from collections.abc import Mapping
from hashlib import blake2b
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from kubenenc.serializers import canonical, flat_json, sorted_json

Registration = Literal["allow", "dedupe", "reject"]

_WINDOWS = {"s": 1.0, "m": 60.0, "h": 3600.0}


class ConcurrencyPolicy(BaseModel):
    """How many invocations of a task may run at once, and whether duplicates may queue.

    - ``running_limit``: at most this many RUNNING invocations per key (None: no limit).
      Paused invocations do not count: a waiter gives its slot away.
    - ``key``: names of the task's arguments that form the key. ``None`` means the running
      limit counts the whole task, and registration compares the whole call (all arguments).
    - ``registration``: ``allow`` queues every call; ``dedupe`` returns the existing
      non-final invocation with the same key instead of queuing another; ``reject`` raises
      :class:`~kubenenc.errors.RegistrationRejected`.
    - ``rate``: at most N *starts* per window per key, ``"N/s"``, ``"N/m"`` or ``"N/h"``,
      counted over every worker: no window of that length (sliding, not calendar) holds
      more than N starts. A call over the rate stays PENDING (its ``not_before`` moved to
      the earliest moment the rate allows it) and does not hold back other keys' calls.
    - ``burst``: at most this many of the N back to back: no window of ``burst / N`` of the
      period holds more than ``burst`` starts (default N: the whole allowance at once).
    """

    model_config = ConfigDict(
        frozen=True, extra="forbid", populate_by_name=True, alias_generator=to_camel
    )

    running_limit: int | None = Field(
        default=None,
        ge=1,
        description="At most this many running invocations per key; unset means no limit.",
    )
    key: tuple[str, ...] | None = Field(
        default=None,
        description="Argument names forming the key; unset means the whole task (running "
        "limit) or the whole call (registration).",
    )
    registration: Registration = Field(
        default="allow",
        description="allow: queue every call; dedupe: return the existing non-final "
        "invocation with the same key; reject: refuse the call.",
    )

    rate: str | None = Field(
        default=None,
        pattern=r"^[1-9][0-9]{0,8}/[smh]$",
        description="At most N starts per second, minute or hour per key, as N/s, N/m or "
        "N/h (a sliding window over every worker); unset means no rate limit.",
    )
    burst: int | None = Field(
        default=None,
        ge=1,
        description="At most this many of the rate's starts back to back (in burst/N of its "
        "window); unset means N.",
    )

    @model_validator(mode="after")
    def _burst_within_rate(self) -> ConcurrencyPolicy:
        limit = self.rate_limit
        if self.burst is not None and limit is None:
            raise ValueError("burst needs a rate")
        if self.burst is not None and limit is not None and self.burst > limit[0]:
            raise ValueError(f"burst {self.burst} is more than the rate's {limit[0]}")
        return self

    @property
    def rate_limit(self) -> tuple[int, float] | None:
        """``(N, window seconds)`` of ``rate``, or None."""
        if self.rate is None:
            return None
        count, unit = self.rate.split("/")
        return int(count), _WINDOWS[unit]

    @property
    def rate_spec(self) -> str | None:
        """The rate as backends read it: ``"N/window/burst"`` (window in seconds), or None."""
        limit = self.rate_limit
        if limit is None:
            return None
        count, window = limit
        return f"{count}/{window:g}/{self.burst or count}"

    @field_validator("key")
    @classmethod
    def _key_names(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is None:
            return None
        for name in value:
            if not name.isidentifier():
                raise ValueError(f"key entry {name!r} is not an argument name")
        if len(set(value)) != len(value):
            raise ValueError("key names an argument twice")
        return value


def _digest(task: str, payload: Mapping[str, Any]) -> str:
    # Plain values (the usual case) are encoded without building a JSON encoder; the text is
    # the same as the general path's: these keys are stored and compared across versions.
    text = flat_json(payload, sort_keys=True)
    if text is None:
        text = sorted_json(canonical(payload))  # only nested values can hold unordered parts
    return f"{task}#{blake2b(text.encode(), digest_size=12).hexdigest()}"


def call_key(task: str, encoded_args: Mapping[str, Any]) -> str:
    """Key of a call: the task plus all its (JSON-encoded) arguments, order-insensitive.

    Cycle detection compares these: two invocations of the same call have the same key.
    """
    return _digest(task, encoded_args)


def running_key(
    policy: ConcurrencyPolicy | None, task: str, encoded_args: Mapping[str, Any]
) -> str | None:
    """The key the running limit counts on, or None when the policy sets no limit."""
    if policy is None or policy.running_limit is None:
        return None
    if policy.key is None:
        return f"{task}#*"
    return _digest(task, {name: encoded_args.get(name) for name in policy.key})


def registration_key(
    policy: ConcurrencyPolicy | None, task: str, encoded_args: Mapping[str, Any]
) -> str | None:
    """The key dedupe/reject compare, or None when registration is ``allow``."""
    if policy is None or policy.registration == "allow":
        return None
    if policy.key is None:
        return call_key(task, encoded_args)
    return _digest(task, {name: encoded_args.get(name) for name in policy.key})


def rate_key(
    policy: ConcurrencyPolicy | None, task: str, encoded_args: Mapping[str, Any]
) -> str | None:
    """The key the rate limit counts starts on, or None when the policy sets no rate."""
    if policy is None or policy.rate is None:
        return None
    if policy.key is None:
        return f"{task}#*"
    return _digest(task, {name: encoded_args.get(name) for name in policy.key})


def parse_rate_spec(spec: str) -> tuple[int, float, int]:
    """``(N, window seconds, burst)`` of a :attr:`ConcurrencyPolicy.rate_spec` text."""
    count, window, burst = spec.split("/")
    return int(count), float(window), int(burst)
