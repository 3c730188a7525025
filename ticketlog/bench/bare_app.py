"""The HTTP row's baseline: FastAPI taking the same request bodies and doing nothing else.

Run as `python -m ticketlog.bench.bare_app PORT`; served by uvicorn exactly as `ticketlog serve`
serves the real API (one worker, same defaults), so the gap measured is our work per command.
"""

from __future__ import annotations

import sys
from typing import Any
from uuid import uuid4

import uvicorn
from fastapi import FastAPI

from api.schemas import CommentCreate, TicketCreate

app = FastAPI(title="bare")


# Plain `def`, like the real routes: FastAPI runs both in its thread pool.
@app.post("/v1/tickets", status_code=201)
def open_ticket(body: TicketCreate) -> dict[str, Any]:
    return {"id": str(uuid4()), "status": "new"}


@app.post("/v1/tickets/{ticket_id}/comments", status_code=201)
def comment(ticket_id: str, body: CommentCreate) -> dict[str, Any]:
    return {"id": ticket_id, "status": "open"}


def main() -> int:
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="info")
    return 0


if __name__ == "__main__":
    sys.exit(main())
