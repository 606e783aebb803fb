"""How :class:`config.Settings` exposes its slices: a descriptor that validates one from the flat values."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from config.groups import Slice

if TYPE_CHECKING:
    from config.settings import Settings

__all__ = ["SliceOf"]

_S = TypeVar("_S", bound=Slice)


class SliceOf(Generic[_S]):
    """A read-only attribute of :class:`Settings`: its slice of kind ``_S``, validated from the flat values."""

    def __init__(self, kind: type[_S]) -> None:
        self.kind = kind

    @overload
    def __get__(self, settings: None, owner: type[Any]) -> SliceOf[_S]: ...
    @overload
    def __get__(self, settings: Settings, owner: type[Any]) -> _S: ...
    def __get__(self, settings: Settings | None, owner: type[Any]) -> _S | SliceOf[_S]:
        if settings is None:
            return self
        values = dict(settings)
        return self.kind.model_validate({**values, "topics": values, "security": values})
