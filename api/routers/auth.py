"""``POST /api/v1/auth/token``: OAuth2 password flow issuing a JWT bearer token."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.security import OAuth2PasswordRequestForm

from api.deps import Context, unauthorized
from api.schemas import TokenOut
from incidents.records import User
from incidents.security import (
    burn_password_check,
    create_access_token,
    hash_password,
    needs_rehash,
    verify_password,
)

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])

BAD_CREDENTIALS = "incorrect username or password"


@router.post("/token", responses={401: {"description": BAD_CREDENTIALS}})
def issue_token(
    form: Annotated[OAuth2PasswordRequestForm, Depends()], context: Context
) -> TokenOut:
    """Exchange ``username`` and ``password`` (form fields) for a bearer token."""
    store = context.store
    user = store.get_user(form.username)
    if user is None:
        burn_password_check(form.password)  # same cost as a wrong password: no user probing
        raise unauthorized(BAD_CREDENTIALS)
    if not verify_password(user.password_hash, form.password) or user.disabled:
        raise unauthorized(BAD_CREDENTIALS)
    if needs_rehash(user.password_hash):
        store.upsert_user(
            User(user.username, hash_password(form.password), user.role, user.tenant, user.disabled)
        )
    lifetime = timedelta(minutes=context.settings.access_token_minutes)
    token = create_access_token(
        subject=user.username,
        role=user.role,
        tenant=user.tenant,
        secret=context.jwt_secret,
        expires_in=lifetime,
    )
    return TokenOut(access_token=token, expires_in=int(lifetime.total_seconds()))
