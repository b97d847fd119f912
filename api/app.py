"""The FastAPI application factory (also a uvicorn factory: ``uvicorn api.app:create_app
--factory``).

Startup (lifespan): migrate the schema, make sure the admin account from
``ADMIN_USERNAME``/``ADMIN_PASSWORD`` exists with that password, then start the in-process
automation engine with its escalation timers (unless ``AUTOMATION_ENABLED=false``: then
``incidents automate`` runs them in a process of their own).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from sqlalchemy.exc import OperationalError
from starlette.concurrency import run_in_threadpool

from api.classification import IncidentClassifier
from api.deps import AppContext
from api.middleware import BodySizeLimitMiddleware, TimingMiddleware
from api.prometheus import ApiMetrics
from api.routers import (
    admin,
    analytics,
    auth,
    automation,
    escalation,
    health,
    incidents,
    metrics,
    remediations,
    silences,
    webhooks,
)
from connectors.automation_engine import AutomationEngine
from connectors.escalation import attach_escalation
from connectors.remediation_runner import Remediator
from connectors.store import IncidentConflict, Store
from incidents import __version__
from incidents.automation import ActionType
from incidents.config import Settings, get_settings
from incidents.interfaces import WindowReader
from incidents.records import Role, User
from incidents.schemas import DEFAULT_TENANT
from incidents.security import hash_password, needs_rehash, resolve_jwt_secret, verify_password

log = logging.getLogger(__name__)

DESCRIPTION = (
    "Streaming incident detection and incident management. Get a token at "
    "`POST /api/v1/auth/token` (the **Authorize** button does this) and send it as "
    "`Authorization: Bearer <token>`."
)


def ensure_admin(store: Store, settings: Settings) -> None:
    """Create or update the admin account from the settings; warn when there is no password."""
    secret = settings.admin_password.get_secret_value() if settings.admin_password else ""
    if not secret:
        log.warning(
            "ADMIN_PASSWORD is not set: no admin account was created or updated for %r",
            settings.admin_username,
        )
        return
    existing = store.get_user(settings.admin_username)
    if (
        existing is not None
        and existing.role is Role.ADMIN
        and not existing.disabled
        and verify_password(existing.password_hash, secret)
        and not needs_rehash(existing.password_hash)
    ):
        return
    store.upsert_user(
        User(
            username=settings.admin_username,
            password_hash=hash_password(secret),
            role=Role.ADMIN,
            tenant=existing.tenant if existing is not None else DEFAULT_TENANT,
        )
    )
    log.info("admin account %r is ready", settings.admin_username)


def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 listing each problem as {loc, msg, type}; the offending input is not echoed back
    (it may be a password or a megabyte of metadata)."""
    problems = [
        {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type", "")}
        for e in exc.errors()
    ]
    return JSONResponse(status_code=422, content={"detail": problems})


def _conflict(_request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(status_code=409, content={"detail": str(exc)})


def _database_unavailable(_request: Request, exc: Exception) -> JSONResponse:
    log.error("database error: %s", type(exc).__name__)
    return JSONResponse(status_code=503, content={"detail": "database unavailable, retry later"})


def _internal_error(_request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return JSONResponse(status_code=500, content={"detail": "internal server error"})


def create_app(settings: Settings | None = None, store: Store | None = None) -> FastAPI:
    """Build the API. Refuses (``ConfigurationError``) when ``JWT_SECRET`` is required but unset.

    A store passed in is left open at shutdown (its owner closes it); one built here is closed.
    """
    settings = settings or get_settings()
    jwt_secret, ephemeral = resolve_jwt_secret(
        settings.jwt_secret.get_secret_value() if settings.jwt_secret else None,
        settings.environment,
    )
    if ephemeral:
        log.warning(
            "JWT_SECRET is not set: using a random per-process secret (ENVIRONMENT=%s); "
            "tokens stop working when the process restarts",
            settings.environment,
        )
    owns_store = store is None
    the_store = store if store is not None else Store.from_settings(settings)
    api_metrics = ApiMetrics(the_store)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(the_store.migrate)
        await run_in_threadpool(ensure_admin, the_store, settings)
        if engine is not None:
            engine.start()
        classifier.warm_up()
        try:
            yield
        finally:
            if engine is not None:
                await run_in_threadpool(engine.stop)
            if windows is not None:
                windows.close()
            remediator.close()
            if owns_store:
                the_store.close()

    app: FastAPI = FastAPIOffline(
        title="Incidents API",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    windows: WindowReader | None = None
    if settings.uses_influx:
        from connectors.influx import InfluxReader

        windows = InfluxReader.from_settings(settings)
    named_actions = settings.named_actions
    engine = (
        AutomationEngine(the_store, settings, named_actions=named_actions)
        if settings.automation_enabled
        else None
    )
    remediator = Remediator(the_store, settings.remediation_catalogue)
    if engine is not None:
        engine.dispatcher.register(ActionType.REMEDIATE, remediator.execute_action)
        attach_escalation(engine)  # escalation timers run with the engine
    classifier = IncidentClassifier.from_settings(settings, the_store)
    app.state.context = AppContext(
        settings=settings,
        store=the_store,
        jwt_secret=jwt_secret,
        metrics=api_metrics,
        windows=windows,
        automation=engine,
        automation_actions=named_actions,
        classifier=classifier,
        remediator=remediator,
    )
    handlers: dict[Any, Any] = {
        RequestValidationError: _validation_error,
        IncidentConflict: _conflict,
        OperationalError: _database_unavailable,
        Exception: _internal_error,
    }
    for exc_type, handler in handlers.items():
        app.add_exception_handler(exc_type, handler)
    # Last added runs first: the size check precedes everything, timing wraps the rest.
    app.add_middleware(TimingMiddleware, observe=api_metrics.observe_request)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_request_bytes)
    for module in (
        health,
        auth,
        incidents,
        metrics,
        analytics,
        admin,
        silences,
        webhooks,
        automation,
        remediations,
        escalation,
    ):
        app.include_router(module.router)
    return app
