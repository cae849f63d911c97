"""Every exception class in `include/imis_thrive` is exactly one kind of trouble (`errors.py`), so the retry
decision is on the class and nowhere else; a family base without a kind is only ever a base."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import include.imis_thrive as package
from include.imis_thrive.errors import FAILS_AT_ONCE, KINDS, BadConfiguration, BadData, ImisThriveError

PACKAGE_DIR = Path(package.__file__).parent


def exception_classes() -> dict[str, type[BaseException]]:
    """{module.Class: class} of every exception class defined in a module of the package."""
    found = {}
    for module_info in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
        module = importlib.import_module(module_info.name)
        for name, value in vars(module).items():
            if inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == module.__name__:
                found[f"{module.__name__}.{name}"] = value
    return found


def instantiated_names() -> set[str]:
    """The names called anywhere in the package's source (`Name(...)` or `module.Name(...)`)."""
    names = set()
    for path in PACKAGE_DIR.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call):
                func = node.func
                names.add(func.id if isinstance(func, ast.Name) else getattr(func, "attr", ""))
    return names


def kinds_of(cls: type[BaseException]) -> list[str]:
    return [kind.__name__ for kind in KINDS if issubclass(cls, kind)]


def test_the_walk_finds_the_domain_errors():
    classes = exception_classes()
    assert len(classes) > 40
    assert "include.imis_thrive.imis.tokens.TokenLockTimeout" in classes


def test_every_exception_class_is_exactly_one_kind_or_a_family_base():
    called = instantiated_names()
    wrong = {}
    for name, cls in exception_classes().items():
        kinds = kinds_of(cls)
        if cls in KINDS or len(kinds) == 1:
            continue
        if not kinds and issubclass(cls, ImisThriveError) and cls.__name__ not in called:
            continue  # a family base such as ImisError: caught, never raised itself
        wrong[name] = kinds or "no kind, and raised itself (make it a family base or give it a kind)"
    assert not wrong, wrong


def test_the_kinds_are_disjoint_and_two_of_them_fail_at_once():
    assert (BadData, BadConfiguration) == FAILS_AT_ONCE
    for kind in KINDS:
        assert kinds_of(kind) == [kind.__name__]


def test_what_a_retry_cannot_fix_fails_at_once():
    """Issue 13, defect 9: bad credentials, a 404, a paging error, an unreadable value or page and a missing staged
    snapshot were retried, delaying the alert by minutes for the same failure."""
    from include.imis_thrive.imis.errors import (
        ImisAnswerNotJson,
        ImisAuthError,
        ImisNotFound,
        ImisPagingError,
        ImisValueError,
    )
    from include.imis_thrive.paging import PagingError
    from include.imis_thrive.sync.diff import SchemaDrift
    from include.imis_thrive.sync.snapshots import SnapshotError
    from include.imis_thrive.thrive.errors import ThriveCredentialsError

    for cls in (ImisAuthError, ImisNotFound, ImisPagingError, PagingError, ImisValueError, ImisAnswerNotJson,
                SnapshotError, ThriveCredentialsError, SchemaDrift):
        assert issubclass(cls, FAILS_AT_ONCE), cls
