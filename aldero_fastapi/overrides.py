"""Dependency overrides that also reach dependencies which resolve the user themselves.

``require_feature`` does not declare ``CurrentUser`` as a sub-dependency. FastAPI
re-solves the sub-dependencies of a dependency on every request, even when the result
is cached, so a gated handler that also takes ``CurrentUser`` would pay one more
resolution step per request. The requirement calls the user dependency itself instead.

An override of the user dependency in ``app.dependency_overrides`` would not reach that
call. ``UserAwareOverrides`` closes the gap: while the user dependency is overridden, it
maps every ``UserDependent`` to its variant that declares the user dependency, and
FastAPI resolves the override for it, sub-dependencies included, as for any other route.
It also keeps the app's own user resolver beside its entries, and records the user an
override resolved in the request's scope, as the user dependency itself does.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, overload

from cachetools import LRUCache
from fastapi import Depends, FastAPI, Request

from aldero_fastapi.request_user import record_user
from aldero_fastapi.resolvers import coerce_user

__all__ = ["UserAwareOverrides", "UserDependent", "install_user_aware_overrides"]

Dependency = Callable[..., Any]
_Default = TypeVar("_Default")
_MISSING: Any = object()


class UserDependent(ABC):
    """A dependency that calls the user dependency itself instead of declaring it."""

    @property
    @abstractmethod
    def through_user_dependency(self) -> Dependency:
        """The same dependency, with the user dependency declared as a sub-dependency."""


class UserAwareOverrides(dict[Dependency, Dependency]):
    """
    ``app.dependency_overrides`` that routes each ``UserDependent`` through an overridden
    user dependency, and falls back to the app's own user resolver.

    FastAPI reads an override with ``get(dependency, dependency)`` on every request while
    the mapping is truthy. An explicit entry wins over ``user_resolver``, so a test can
    override the user and ``clear()`` the mapping afterwards without removing the app's
    resolver. An explicit override of a ``UserDependent`` wins as well.
    """

    def __init__(
        self, overrides: Mapping[Dependency, Dependency], user_dependency: Dependency
    ) -> None:
        super().__init__(overrides)
        self.user_dependency = user_dependency
        self.user_resolver: Dependency | None = None
        # Bounded, because a test suite may install a new override for every test.
        self._recording: LRUCache[Dependency, Dependency] = LRUCache(maxsize=64)

    def __bool__(self) -> bool:
        # FastAPI skips the overrides of an empty mapping, which must not skip the resolver.
        return self.user_resolver is not None or len(self) > 0

    @property
    def user_is_replaced(self) -> bool:
        """Whether an entry or the app's resolver replaces the user dependency."""
        return self.user_resolver is not None or self.user_dependency in self

    @overload
    def get(self, key: Dependency, default: None = None, /) -> Dependency | None: ...

    @overload
    def get(self, key: Dependency, default: Dependency, /) -> Dependency: ...

    @overload
    def get(self, key: Dependency, default: _Default, /) -> Dependency | _Default: ...

    def get(self, key: Dependency, default: Any = None, /) -> Any:
        override = dict.get(self, key, _MISSING)
        if key is self.user_dependency:
            replacement = self.user_resolver if override is _MISSING else override
            return default if replacement is None else self._recording_user(replacement)

        if override is not _MISSING:
            return override

        if isinstance(key, UserDependent) and self.user_is_replaced:
            return key.through_user_dependency

        return default

    def _recording_user(self, replacement: Dependency) -> Dependency:
        # One wrapper per replacement, because FastAPI caches facts about every callable
        # it resolves, and a new wrapper per request would grow those caches.
        wrapper = self._recording.get(replacement)
        if wrapper is None:
            wrapper = _record_user_of(replacement)
            self._recording[replacement] = wrapper
        return wrapper


def _record_user_of(replacement: Dependency) -> Dependency:
    async def resolve_and_record_user(
        request: Request,
        user: Any = Depends(replacement),  # noqa: B008 - the dependency is only known here
    ) -> Any:
        # A user id string or None is turned into a user or a 401, as for a resolver.
        # Other objects pass unchanged, for tests whose fake users have their own type.
        if user is None or isinstance(user, str):
            user = coerce_user(user)
        record_user(request, user)
        return user

    return resolve_and_record_user


def install_user_aware_overrides(app: FastAPI, user_dependency: Dependency) -> UserAwareOverrides:
    """
    Replace ``app.dependency_overrides`` by a ``UserAwareOverrides`` with the same entries,
    unless it is one already, and return it.
    """
    overrides = app.dependency_overrides
    if not isinstance(overrides, UserAwareOverrides):
        overrides = UserAwareOverrides(overrides, user_dependency)
        app.dependency_overrides = overrides
    return overrides
