"""A regime's documents (improvement plans, monthly returns), read by the hash its steps and audit carry."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.responses import Response

from api import documents
from api.deps import CurrentUser, DbPool
from api.errors import Problem
from api.routes.regimes.bodies import RegimeIdPath
from api.routes.regimes.permissions import regime_row, require_read

router = APIRouter(tags=["documents"])
Sha256Path = Annotated[str, Path(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the document's canonical JSON")]


@router.get("/regimes/{regime_id}/documents/{sha256}", operation_id="getDocument",
            response_model=dict[str, Any],
            summary="A document submitted to the regime, exactly as stored (its SHA-256 is the one the step and "
                    "the audit entry carry)")
async def get_document(regime_id: RegimeIdPath, sha256: Sha256Path, user: CurrentUser, pool: DbPool):
    row = await regime_row(pool, regime_id)
    require_read(user, row)
    doc = await documents.load(pool, regime_id, sha256)
    if doc is None:
        raise Problem(404, "unknown-document", f"no document {sha256} was submitted to {regime_id}")
    kind, body = doc
    return Response(body, media_type="application/json",
                    headers={"X-Document-Kind": kind, "ETag": f'"{sha256}"', "Cache-Control": "private, max-age=86400"})
