"""Documents by reference: what a party submits as a document is stored once in PostgreSQL, and the
workflow carries only its reference (the SHA-256 of its canonical JSON, its kind, size and a summary).

The API validates the document against the step's typed model, stores it (api/documents.py) and sends the
workflow a `DocumentPayload`; the audit entry of the decision records the hash, so the chain proves which
document was decided on. Workflows accept the full payload too: histories recorded before this change carry
it, and replay must take the path they took.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from domain.programme import PlanIndex, ProgressIndex
from domain.steps import Kind

# (step kind, action) -> document kind. Their payloads are documents: stored once, referenced by hash.
# A document kind is named after the step kind whose payload it first was.
DOCUMENT_ACTIONS: dict[tuple[str, str], str] = {
    (Kind.improvement_plan, "submit"): Kind.improvement_plan,
    (Kind.revised_action_plan, "submit"): Kind.improvement_plan,
    (Kind.monthly_return, "submit"): Kind.monthly_return,
}


class DocumentRef(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    kind: str = Field(max_length=50)
    bytes: int = Field(ge=0)
    summary: dict[str, int | str | None] = Field(default_factory=dict, max_length=20)


class DocumentPayload(BaseModel):
    """A decision's payload when it is a document: the reference, not the content, and for a plan or a monthly
    report the small summary the workflow keeps of it (domain/programme.py; absent from histories recorded
    before issue 15)."""
    model_config = ConfigDict(extra="forbid")
    document: DocumentRef
    plan: PlanIndex | None = None
    progress: ProgressIndex | None = None


def canonical(payload: dict[str, Any]) -> bytes:
    """The bytes a document's hash is taken over: its JSON with sorted keys and no spaces."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def reference(kind: str, payload: dict[str, Any]) -> tuple[DocumentRef, bytes]:
    body = canonical(payload)
    return DocumentRef(sha256=hashlib.sha256(body).hexdigest(), kind=kind, bytes=len(body),
                       summary=summary(kind, payload)), body


def summary(kind: str, payload: dict[str, Any]) -> dict[str, int | str | None]:
    """What the workflow and the lists show without reading the document."""
    if kind == Kind.improvement_plan:
        actions = payload.get("actions") or []
        return {"actions": len(actions), "must_do": sum(a.get("category") == "must_do" for a in actions),
                "should_do": sum(a.get("category") == "should_do" for a in actions)}
    if kind == Kind.monthly_return:
        return {"characters": len(payload.get("summary") or ""), "public_update_url": payload.get("public_update_url")}
    return {}


def is_reference(kind: str, action: str, payload: Any) -> bool:
    return (kind, action) in DOCUMENT_ACTIONS and isinstance(payload, dict) and "document" in payload \
        and set(payload) <= {"document", "plan", "progress"}
