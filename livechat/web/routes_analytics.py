"""The analytics summary over REST (docs/openapi.json, README "Analytics"): parse the period, grouping and format,
call the service, render JSON or CSV. ``GET /admin/analytics`` (A.4) stays in routes_conversations."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

from aiohttp import web

from livechat.domain.models import GroupBy
from livechat.domain.policy import Action
from livechat.errors import InvalidInput
from livechat.keys import services_key
from livechat.serialization import summary_csv, summary_view
from livechat.web.http import ok
from livechat.web.routes_conversations import authorized, query_param

routes = web.RouteTableDef()

FORMATS = ("json", "csv")
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# A date with a time must say its offset (Z or ±hh:mm): a bare local time would be a guess.
_INSTANT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})$")


def parse_instant(text: str | None, *, end: bool) -> datetime | None:
    """``YYYY-MM-DD`` (a UTC day: from its start, or for ``to`` up to its end, so the day is
    included) or an ISO-8601 date-time with an offset; UTC, truncated to milliseconds."""
    if text is None:
        return None
    try:
        if _DAY.match(text):
            day = datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
            return day + timedelta(days=1) if end else day
        if _INSTANT.match(text):
            instant = datetime.fromisoformat(text).astimezone(UTC)
            return instant.replace(microsecond=instant.microsecond // 1000 * 1000)
    except (ValueError, OverflowError):
        pass
    raise InvalidInput()


def reject_operator_keys(request: web.Request) -> None:
    """``from[$gt]=…`` is how query-string parsers like Express's ``qs`` smuggle an operator
    object; aiohttp would read it as an unknown key and ignore it, we refuse it instead."""
    if any("[" in key or "$" in key for key in request.query):
        raise InvalidInput()


@routes.get("/admin/analytics/summary")
async def summary_handler(request: web.Request) -> web.Response:
    user = await authorized(request, Action.READ_ANALYTICS_SUMMARY)
    reject_operator_keys(request)
    start = parse_instant(query_param(request, "from"), end=False)
    end = parse_instant(query_param(request, "to"), end=True)
    group_text = query_param(request, "groupBy")
    try:
        group_by = GroupBy.SUPERVISOR if group_text is None else GroupBy(group_text)
    except ValueError:
        raise InvalidInput() from None
    output = query_param(request, "format")
    output = "json" if output is None else output
    if output not in FORMATS:
        raise InvalidInput()
    summary = await request.app[services_key].analytics.summary(user, start=start, end=end, group_by=group_by)
    if output == "csv":
        filename = f"livechat-{group_by.value}-{summary.start:%Y%m%d}-{summary.end:%Y%m%d}.csv"
        return web.Response(text=summary_csv(summary), content_type="text/csv", charset="utf-8",
                            headers={"Content-Disposition": f'attachment; filename="{filename}"',
                                     "Cache-Control": "no-store"})
    return ok(summary_view(summary))
