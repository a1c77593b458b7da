"""The console's routes, added to the app in one line."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from gateway.web.console import audit_pages, auth, request_pages

__all__ = ["ROUTES"]


async def _home(_request: Request) -> Response:
    return RedirectResponse("/console/events", status_code=303)


ROUTES = [
    Route("/console", _home, methods=["GET"]),
    Route("/console/sign-in", auth.sign_in_form, methods=["GET"]),
    Route("/console/sign-in", auth.sign_in, methods=["POST"]),
    Route("/console/sign-out", auth.sign_out, methods=["POST"]),
    Route("/console/events", audit_pages.events, methods=["GET"]),
    Route("/console/events/{customer_id}/{seq}", audit_pages.event, methods=["GET"]),
    Route("/console/verify", audit_pages.verify_form, methods=["GET"]),
    Route("/console/verify", audit_pages.verify, methods=["POST"]),
    Route("/console/disclosures", audit_pages.disclosures, methods=["GET"]),
    Route("/console/requests", request_pages.request_list, methods=["GET"]),
    Route("/console/requests", request_pages.file_request, methods=["POST"]),
    Route("/console/requests/new", request_pages.new_request, methods=["GET"]),
    Route("/console/requests/{request_id}", request_pages.request_detail, methods=["GET"]),
    Route("/console/requests/{request_id}/verify", request_pages.verify_request, methods=["POST"]),
    Route("/console/requests/{request_id}/result", request_pages.download_result, methods=["GET"]),
    Route(
        "/console/requests/{request_id}/files/{name}",
        request_pages.download_file,
        methods=["GET"],
    ),
]
