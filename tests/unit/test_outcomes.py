"""Exceptions captured in a worker and rebuilt, with their type, for a caller."""

from __future__ import annotations

import sys

import pytest
from kubenenc.decodable import DecodableTypes
from kubenenc.errors import (
    CycleDetectedError,
    DependencyFailed,
    RemoteError,
    TaskTimeout,
    WorkerLost,
)
from kubenenc.outcomes import error_info, rebuild_error
from kubenenc.records import ErrorInfo


class TwoArgs(Exception):
    def __init__(self, a: int, b: int) -> None:
        super().__init__(a, b)


class Holder:
    class Nested(Exception):
        pass


def captured(exc: BaseException) -> ErrorInfo:
    try:
        raise exc
    except BaseException as caught:
        return error_info(caught)


def test_error_info_captures_type_message_and_traceback() -> None:
    info = captured(ValueError("bad value"))
    assert info.type == "builtins.ValueError"
    assert info.message == "bad value"
    assert "Traceback (most recent call last)" in info.traceback
    assert "ValueError: bad value" in info.traceback
    assert "captured" in info.traceback  # the frame that raised it


@pytest.mark.parametrize(
    ("exc", "message"),
    [
        (KeyError("k"), "k"),
        (RuntimeError(), ""),
        (TwoArgs(1, 2), "(1, 2)"),
        (OSError(2, "No such file"), "(2, 'No such file')"),
        (ValueError(42), "42"),
    ],
)
def test_error_info_message(exc: BaseException, message: str) -> None:
    assert captured(exc).message == message


def test_error_info_type_path_of_nested_and_kubenenc_classes() -> None:
    assert captured(Holder.Nested("x")).type == f"{__name__}.Holder.Nested"
    assert captured(CycleDetectedError("loop")).type == "kubenenc.errors.CycleDetectedError"


@pytest.mark.parametrize(
    "cls", [ValueError, KeyError, ZeroDivisionError, TimeoutError, ArithmeticError]
)
def test_builtin_types_are_rebuilt(cls: type[Exception]) -> None:
    exc = rebuild_error(captured(cls("msg")))
    assert type(exc) is cls
    assert exc.args == ("msg",)


@pytest.mark.parametrize("cls", [CycleDetectedError, DependencyFailed, TaskTimeout, WorkerLost])
def test_kubenenc_types_are_rebuilt(cls: type[Exception]) -> None:
    exc = rebuild_error(captured(cls("a(1) -> b(1)")))
    assert type(exc) is cls
    assert str(exc) == "a(1) -> b(1)"


def test_a_user_type_is_rebuilt_only_when_declared() -> None:
    info = captured(Holder.Nested("x"))
    undeclared = rebuild_error(info)  # imported here, but never declared
    assert type(undeclared) is RemoteError
    assert undeclared.type_name == f"{__name__}.Holder.Nested"
    declared = rebuild_error(info, DecodableTypes([Holder.Nested]))
    assert type(declared) is Holder.Nested and str(declared) == "x"


RAN: list[str] = []


class NoisyError(Exception):
    def __init__(self, message: str) -> None:
        RAN.append(message)
        super().__init__(message)


def test_a_stored_error_type_never_picks_code_to_run() -> None:
    for path in (f"{__name__}.NoisyError", "subprocess.Popen", "os.system", "builtins.eval"):
        exc = rebuild_error(ErrorInfo(path, "touch /tmp/x"), DecodableTypes())
        assert type(exc) is RemoteError, path
    assert RAN == []


def test_remote_traceback_is_attached_as_a_note() -> None:
    info = captured(ValueError("bad"))
    exc = rebuild_error(info)
    notes = getattr(exc, "__notes__", [])
    assert len(notes) == 1
    assert notes[0].startswith("raised in a worker:\n")
    assert "ValueError: bad" in notes[0]
    assert not hasattr(rebuild_error(ErrorInfo("builtins.ValueError", "x")), "__notes__")


def test_unknown_type_becomes_remote_error() -> None:
    info = ErrorInfo("nowhere.module.Missing", "gone", "Traceback ...\nMissing: gone\n")
    exc = rebuild_error(info)
    assert type(exc) is RemoteError
    assert exc.type_name == "nowhere.module.Missing"
    assert exc.remote_traceback == info.traceback
    assert "nowhere.module.Missing: gone" in str(exc)
    assert "nowhere" not in sys.modules


def test_a_module_not_imported_here_is_not_imported(monkeypatch: pytest.MonkeyPatch) -> None:
    name = "xml.dom.pulldom"
    monkeypatch.delitem(sys.modules, name, raising=False)  # never skip: make it not imported
    exc = rebuild_error(ErrorInfo(f"{name}.SomeError", "x"))
    assert type(exc) is RemoteError
    assert name not in sys.modules


@pytest.mark.parametrize(
    "path",
    [
        f"{__name__}.TwoArgs",  # needs two arguments
        "builtins.len",  # not an exception class
        "builtins.KeyboardInterrupt",  # not an Exception: never rebuilt as itself
        f"{__name__}.Holder.Missing",
    ],
)
def test_types_that_cannot_be_rebuilt_become_remote_error(path: str) -> None:
    exc = rebuild_error(ErrorInfo(path, "m", "tb"))
    assert type(exc) is RemoteError
    assert exc.type_name == path
