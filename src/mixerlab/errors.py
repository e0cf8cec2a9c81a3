"""The one error type for bad configuration, and the helper that raises it.

Every message names the field, the value that was given and what is allowed, so that a typo in a
sweep file is found from the message alone.
"""

from __future__ import annotations

from typing import Any


class ConfigError(ValueError):
    """A configuration value is unknown, of the wrong type, or impossible in combination."""

    def __init__(self, owner: str, field: str, value: Any, allowed: str) -> None:
        self.owner, self.field, self.value, self.allowed = owner, field, value, allowed
        super().__init__(f"{owner}: {field}={value!r} is not allowed; {allowed}")


def check(condition: bool, owner: str, field: str, value: Any, allowed: str) -> None:
    """Raise :class:`ConfigError` unless ``condition`` holds."""
    if not condition:
        raise ConfigError(owner, field, value, allowed)


def check_positive_int(owner: str, field: str, value: Any) -> None:
    check(
        isinstance(value, int) and not isinstance(value, bool) and value > 0,
        owner,
        field,
        value,
        "expected a positive integer",
    )


def check_choice(owner: str, field: str, value: Any, choices: tuple[str, ...] | list[str]) -> None:
    check(value in choices, owner, field, value, f"expected one of {sorted(choices)}")


def check_divisible(owner: str, field: str, value: int, by_field: str, by_value: int) -> None:
    check(
        value % by_value == 0,
        owner,
        field,
        value,
        f"must be divisible by {by_field}={by_value}",
    )
