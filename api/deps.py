"""FastAPI dependencies: the app context (settings, store, metrics), the caller, role checks."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from time import monotonic
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Path, Request, status
from fastapi.security import OAuth2PasswordBearer

from api.classification import IncidentClassifier
from api.prometheus import ApiMetrics
from connectors.automation_engine import AutomationEngine
from connectors.remediation_runner import Remediator
from connectors.store import Store
from incidents.config import Settings
from incidents.interfaces import WindowReader
from incidents.records import Role, utc
from incidents.security import TokenError, decode_access_token, has_role

LOGIN_PATH = "/api/v1/auth/token"
BEARER = {"WWW-Authenticate": "Bearer"}

oauth2_scheme = OAuth2PasswordBearer(tokenUrl=LOGIN_PATH, auto_error=False)


@dataclass
class AppContext:
    """Everything a request needs from the app; lives on ``app.state.context``."""

    settings: Settings
    store: Store
    jwt_secret: str = field(repr=False)
    metrics: ApiMetrics
    windows: WindowReader | None = None
    """Where metric windows are read from: InfluxDB when configured, else the store."""
    classifier: IncidentClassifier | None = None
    """Classifies new incidents and learns from category corrections (``api.classification``)."""
    started: float = field(default_factory=monotonic)
    automation: AutomationEngine | None = None
    """The in-process automation engine (``AUTOMATION_ENABLED``), woken after incident changes."""
    automation_actions: dict[str, Any] = field(default_factory=dict)
    """Named action definitions from ``AUTOMATION_ACTIONS``."""
    remediator: Remediator | None = None
    """Runs the remediations of ``REMEDIATIONS`` (API and automation rules alike)."""

    def incidents_changed(self) -> None:
        if self.automation is not None:
            self.automation.wake()


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller, from a verified token checked against the user table."""

    username: str
    role: Role
    tenant: str


def get_context(request: Request) -> AppContext:
    return request.app.state.context


Context = Annotated[AppContext, Depends(get_context)]


def get_store(context: Context) -> Store:
    return context.store


def get_settings(context: Context) -> Settings:
    return context.settings


def get_window_reader(context: Context) -> WindowReader:
    return context.windows if context.windows is not None else context.store


StoreDep = Annotated[Store, Depends(get_store)]
WindowReaderDep = Annotated[WindowReader, Depends(get_window_reader)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


def unauthorized(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail=detail, headers=BEARER)


def get_principal(
    context: Context, token: Annotated[str | None, Depends(oauth2_scheme)]
) -> Principal:
    """401 unless the bearer token is valid and still matches an enabled user.

    Role and tenant come from the token but must equal the user's current ones, so demoting or
    moving a user invalidates the tokens issued before.
    """
    if not token:
        raise unauthorized(
            f"not authenticated: send 'Authorization: Bearer <token>' (get one at {LOGIN_PATH})"
        )
    try:
        claims = decode_access_token(token, context.jwt_secret)
    except TokenError as exc:
        raise unauthorized(f"{exc}; sign in again at {LOGIN_PATH}") from exc
    user = context.store.get_user(claims.subject)
    if user is None or user.disabled:
        raise unauthorized("the token's user does not exist or is disabled")
    if user.role != claims.role or user.tenant != claims.tenant:
        raise unauthorized("the token is outdated (role or tenant changed); sign in again")
    return Principal(username=user.username, role=user.role, tenant=user.tenant)


def require_role(required: Role) -> Callable[[Principal], Principal]:
    def check(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        if not has_role(principal.role, required):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                detail=f"this needs the role '{required}' or higher; you are '{principal.role}'",
            )
        return principal

    return check


Viewer = Annotated[Principal, Depends(require_role(Role.VIEWER))]
Responder = Annotated[Principal, Depends(require_role(Role.RESPONDER))]
Admin = Annotated[Principal, Depends(require_role(Role.ADMIN))]

IncidentId = Annotated[uuid.UUID, Path(description="The incident's id (a UUID).")]


def check_interval(since: datetime | None, until: datetime | None) -> None:
    if since is not None and until is not None and utc(since) > utc(until):
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, detail="'since' must not be after 'until'"
        )
