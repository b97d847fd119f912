"""Administration (role admin): users, system health, configuration, migrations."""

from __future__ import annotations

from time import monotonic
from typing import Any

from fastapi import APIRouter, HTTPException, status

from api.deps import Admin, Context
from api.schemas import AdminHealthOut, UserCreate, UserOut
from incidents import __version__
from incidents.records import User
from incidents.security import hash_password

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])


@router.post(
    "/users",
    status_code=status.HTTP_201_CREATED,
    responses={409: {"description": "The username is taken"}},
)
def create_user(body: UserCreate, principal: Admin, context: Context) -> UserOut:
    """Create a viewer, responder or admin account in a tenant."""
    store = context.store
    if store.get_user(body.username) is not None:
        raise HTTPException(
            status.HTTP_409_CONFLICT, detail=f"user {body.username!r} already exists"
        )
    user = User(
        username=body.username,
        password_hash=hash_password(body.password.get_secret_value()),
        role=body.role,
        tenant=body.tenant,
    )
    store.upsert_user(user)
    return UserOut.from_record(user)


@router.get("/health")
def system_health(principal: Admin, context: Context) -> AdminHealthOut:
    """Database reachability, the dataflow's counters and this process' uptime."""
    up = context.store.ping()
    pipeline = context.store.pipeline_stats() if up else {}
    return AdminHealthOut(
        status="ok" if up else "degraded",
        database="up" if up else "down",
        environment=context.settings.environment,
        version=__version__,
        uptime_seconds=round(monotonic() - context.started, 3),
        pipeline=pipeline,
    )


@router.get("/config")
def config_status(principal: Admin, context: Context) -> dict[str, Any]:
    """The effective settings without secrets (secrets show only as "set"/"unset")."""
    return context.settings.public_view()


@router.post("/migrate")
def run_migrations(principal: Admin, context: Context) -> dict[str, str]:
    """Apply pending schema migrations (the API also does this at startup)."""
    context.store.migrate()
    return {"status": "ok"}
