"""The caller's own account (the UI shows or hides actions by role)."""

from __future__ import annotations

from fastapi import APIRouter

from dashboards.deps import access
from dashboards.security import OPERATE, READ, TRIAGE, User

router = APIRouter(prefix="/api", tags=["account"])


@router.get("/me")
def me(user: User = access(READ, "none")) -> dict:
    return {**user.as_dict(), "may_triage": user.role in TRIAGE, "may_operate": user.role in OPERATE}
