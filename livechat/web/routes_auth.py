"""POST /auth/signup, POST /auth/login, GET /auth/me (docs/openapi.json); token revocation:
POST /auth/logout-all, POST /auth/password, PATCH /admin/users/:id (README "Operations")."""

from __future__ import annotations

from aiohttp import web

from livechat.domain import policy
from livechat.domain.auth import LoginRequest, PasswordChange, RoleChange, SignupRequest
from livechat.domain.policy import Action
from livechat.errors import NotFound
from livechat.keys import services_key
from livechat.serialization import parse_object_id, user_view
from livechat.web.http import bearer_token, ok, parse_body

routes = web.RouteTableDef()


@routes.post("/auth/signup")
async def signup_handler(request: web.Request) -> web.Response:
    auth = request.app[services_key].auth
    token = bearer_token(request)
    # A bearer token is optional here: an admin or supervisor creating staff accounts (B.6).
    actor = await auth.authenticate(token) if "Authorization" in request.headers else None
    user = await auth.signup(actor, await parse_body(request, SignupRequest))
    return ok(user_view(user), status=201)


@routes.post("/auth/login")
async def login_handler(request: web.Request) -> web.Response:
    req = await parse_body(request, LoginRequest)
    token, user = await request.app[services_key].auth.login(req, client=request.remote or "unknown")
    return ok({"token": token, "user": user_view(user)})


@routes.get("/auth/me")
async def me_handler(request: web.Request) -> web.Response:
    auth = request.app[services_key].auth
    user = await auth.authenticate(bearer_token(request), deleted=NotFound("User not found"))
    return ok(user_view(user))


@routes.post("/auth/logout-all")
async def logout_all_handler(request: web.Request) -> web.Response:
    auth = request.app[services_key].auth
    user = await auth.authenticate(bearer_token(request))
    await auth.logout_all(user)
    return ok({"loggedOut": True})


@routes.post("/auth/password")
async def password_handler(request: web.Request) -> web.Response:
    auth = request.app[services_key].auth
    user = await auth.authenticate(bearer_token(request))
    req = await parse_body(request, PasswordChange)
    token = await auth.change_password(user, req, client=request.remote or "unknown")
    return ok({"token": token})


@routes.patch("/admin/users/{id:[^/]+}")
async def change_role_handler(request: web.Request) -> web.Response:
    auth = request.app[services_key].auth
    actor = await auth.authenticate(bearer_token(request))
    policy.ensure_role(actor, Action.CHANGE_ROLE)
    user_id = parse_object_id(request.match_info["id"])
    req = await parse_body(request, RoleChange)
    return ok(user_view(await auth.change_role(actor, user_id, req)))
