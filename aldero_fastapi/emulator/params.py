"""Path parameters shared by the tenant and admin routes."""

from __future__ import annotations

import unicodedata
from typing import Annotated

from fastapi import Depends, Path, Request

from .errors import invalid_field
from .path_segments import decode_segment

MAX_USER_ID_LENGTH = 128


def user_id_from_path(request: Request, user_id: Annotated[str, Path(alias="userId")]) -> str:
    """Return the ``userId`` path parameter, or raise a 422 ApiError when it is invalid.

    A user id has 1 to 128 characters. Any Unicode is allowed except control characters,
    and a ``/`` arrives encoded as ``%2F``.
    """
    user_id = decode_segment(request, user_id)

    if len(user_id) > MAX_USER_ID_LENGTH:
        raise invalid_field(
            "userId", user_id, f"A user id has at most {MAX_USER_ID_LENGTH} characters."
        )

    if any(unicodedata.category(char) == "Cc" for char in user_id):
        raise invalid_field("userId", user_id, "A user id must not contain control characters.")

    return user_id


UserId = Annotated[str, Depends(user_id_from_path)]
