"""/healthz: liveness plus how far each view is behind the log; needs no token."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from api.deps import RuntimeDep
from api.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
def healthz(request: Request, runtime: RuntimeDep) -> dict[str, Any]:
    views = [
        {"name": s.name, "position": s.position, "head": s.head, "lag": s.lag}
        for s in runtime.runner.status()
    ]
    # `serve` runs a background follower; other hosts of the app (tests) may not.
    follower = getattr(request.app.state, "follower", None)
    details = None if follower is None else follower.details()
    return {"status": "ok", "views": views, "follower": details}
