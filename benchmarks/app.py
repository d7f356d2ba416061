"""The app under load: one route per integration style, all in one process.

- ``/bare``: token check only.
- ``/gated``: token check, cached entitlements and ``require_feature``, written as
  the README shows: the requirement in ``dependencies=`` and ``CurrentUser`` as a
  parameter.
- ``/gated-entitlements``: the same checks, with the handler taking the entitlements
  that ``require_feature`` returns instead of ``CurrentUser``, which spares FastAPI
  one dependency resolution.
- ``/naive``: token check plus an upstream fetch per request, as a hand-written
  integration without a cache would do.

Settings come from ``ALDERO_*`` variables, which ``load.py`` sets.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, FastAPI

from aldero_fastapi import Aldero, CurrentUser, Entitlements, get_aldero, require_feature
from aldero_fastapi.http_errors import AlderoHTTPException

aldero = Aldero()
app = FastAPI(lifespan=aldero.lifespan)
aldero.install(app)


@app.get("/bare")
async def bare(user: CurrentUser) -> dict[str, str]:
    return {"userId": user.id}


@app.get("/gated", dependencies=[Depends(require_feature("pro_features"))])
async def gated(user: CurrentUser) -> dict[str, str]:
    return {"userId": user.id}


@app.get("/gated-entitlements")
async def gated_entitlements(
    entitlements: Annotated[Entitlements, Depends(require_feature("pro_features"))],
) -> dict[str, str]:
    return {"userId": entitlements.user_id}


@app.get("/naive")
async def naive(
    user: CurrentUser, plugin: Annotated[Aldero, Depends(get_aldero)]
) -> dict[str, str]:
    entitlements = await plugin.billing.get_entitlements(user.id)
    if not entitlements.has_feature("pro_features"):
        raise AlderoHTTPException(403, "Pro subscription required")
    return {"userId": user.id}
