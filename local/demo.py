"""The demo website at `/`: a tiny site of its own whose backend holds the dev key and calls the API.

It plays the part of a customer's website: it starts a connection (either dialect), sends the
browser to the consent page, shows the outcome it comes back with, and lists and disconnects the
schedule's connections. Forms only, no script; every value on the page is escaped.
"""

from __future__ import annotations

import html
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import httpx
from werkzeug.wrappers import Request, Response

from local.demo_webhooks import WEBHOOK_PATH, WebhookInbox

DEMO_PATHS = ("/", "/demo/connect", "/demo/disconnect", WEBHOOK_PATH)
DEFAULT_SCHEDULE = "demo-schedule"
_CSP = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'"
_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem;color:#222}"
    "fieldset{border:1px solid #ccc;padding:1rem;margin:1rem 0}label{display:block;margin:.5rem 0}"
    "table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;padding:.3rem;text-align:left}"
    ".ok{background:#e8f6e8;padding:.8rem}.bad{background:#fbe9e9;padding:.8rem}code{word-break:break-all}"
)


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


class DemoSite:
    """WSGI app for `/` and `/demo/*`. `api_url`: where its backend reaches the API;
    `return_url`: where the browser comes back (must be within the dev key's allowed prefixes)."""

    def __init__(self, api_url: str, api_key: str, return_url: str) -> None:
        self.api_url = api_url.rstrip("/")
        self.return_url = return_url
        self._api = httpx.Client(
            base_url=self.api_url, headers={"Authorization": f"Bearer {api_key}"}, timeout=httpx.Timeout(30.0)
        )
        self.inbox = WebhookInbox()

    # --- its webhook receiver (local/demo_webhooks.py) --------------------------------------------------

    @property
    def webhook_url(self) -> str:
        return self.api_url + WEBHOOK_PATH

    def register_webhook(self) -> None:
        """Register this site's receiver through the API, as a website would, and keep the secret it answers."""
        answer = self._call("PUT", "/v2/external-calendars/webhook", json={"url": self.webhook_url})
        answer.raise_for_status()
        self.use_webhook_secret(answer.json().get("secret", ""))

    def use_webhook_secret(self, secret: str) -> None:
        self.inbox.secret = secret

    def _webhooks(self, request: Request) -> Response:
        if request.method == "POST":
            return self.inbox.receive(request)
        body = (
            "<!doctype html><html lang=en><head><meta charset=utf-8><meta http-equiv=refresh content=2>"
            f"<title>Webhook deliveries</title><style>{_STYLE}</style></head><body>"
            f'<p><a href="/">Back to the demo</a></p>{self.inbox.section()}</body></html>'
        )
        return Response(body, 200, content_type="text/html; charset=utf-8", headers={"Cache-Control": "no-store"})

    def close(self) -> None:
        self._api.close()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        if request.path == WEBHOOK_PATH and request.method in ("GET", "HEAD", "POST"):
            response = self._webhooks(request)  # deliveries carry no Origin; their signature is what counts
        elif request.method == "POST" and not self._same_origin(request):
            response = self._page(403, "<p class=bad>Cross-site form submissions are refused.</p>", "", [])
        elif request.path == "/" and request.method in ("GET", "HEAD"):
            response = self._home(request)
        elif request.path == "/demo/connect" and request.method == "POST":
            response = self._connect(request)
        elif request.path == "/demo/disconnect" and request.method == "POST":
            response = self._disconnect(request)
        else:
            response = Response('{"message":"Not Found"}', 404, content_type="application/json")
        return response(environ, start_response)

    @staticmethod
    def _same_origin(request: Request) -> bool:
        # Browsers send Origin on form posts (the page's Referrer-Policy keeps it from being "null").
        origin = request.headers.get("Origin")
        return origin is None or urlsplit(origin).netloc == request.host

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self._api.request(method, path, **kwargs)

    def _home_url(self, **params: str) -> str:
        return self.return_url + ("?" + urlencode(params) if params else "")

    # --- pages ----------------------------------------------------------------------------------------

    def _home(self, request: Request, notice: str = "", status: int = 200) -> Response:
        args = request.values  # a failed POST shows its own form's values again
        schedule_id = args.get("scheduleId") or DEFAULT_SCHEDULE
        chosen = args.get("providerId") or "sandbox"
        outcome = notice or self._outcome(args)
        providers = self._providers()
        return self._page(status, outcome, self._connections(schedule_id), providers, schedule_id, chosen)

    @staticmethod
    def _outcome(args: Any) -> str:
        if args.get("connectionId"):
            dialect = " (TeamUp: success=1)" if args.get("success") == "1" else ""
            return (
                f"<section id=outcome class=ok data-outcome=connected><p>Connected{_e(dialect)}. connectionId: "
                f"<code id=connection-id>{_e(args['connectionId'])}</code></p></section>"
            )
        if args.get("error"):
            dialect = " (TeamUp: success=0)" if args.get("success") == "0" else ""
            return (
                f"<section id=outcome class=bad data-outcome=failed><p>Not connected{_e(dialect)}. "
                f"error: <code id=error>{_e(args['error'])}</code>, "
                f"reason: <code id=reason>{_e(args.get('reason', ''))}</code></p></section>"
            )
        if args.get("disconnected"):
            return (
                f"<section id=outcome class=ok data-outcome=disconnected><p>Disconnected "
                f"<code>{_e(args['disconnected'])}</code>; revoked at the provider: "
                f"<code id=revoked>{_e(args.get('revokedAtProvider', ''))}</code></p></section>"
            )
        return ""

    def _providers(self) -> list[dict[str, Any]]:
        try:
            answer = self._call("GET", "/v2/external-calendars/providers")
            if answer.status_code == 200:
                return [p for p in answer.json().get("providers", []) if "OAUTH" in p.get("connectMethods", [])]
        except (httpx.HTTPError, ValueError):
            pass
        return []

    def _connections(self, schedule_id: str) -> str:
        try:
            answer = self._call("GET", "/v2/external-calendars/connections", params={"scheduleId": schedule_id})
        except httpx.HTTPError:
            return "<p>The connections API is not reachable.</p>"
        if answer.status_code != 200:
            return f"<p>Listing connections answered {answer.status_code}.</p>"
        rows = []
        for c in answer.json().get("connections", []):
            button = ""
            if c.get("status") != "DISCONNECTED":
                button = (
                    '<form method=post action="/demo/disconnect">'
                    f'<input type=hidden name=connectionId value="{_e(c["connectionId"])}">'
                    f'<input type=hidden name=scheduleId value="{_e(schedule_id)}">'
                    "<button type=submit>Disconnect</button></form>"
                )
            rows.append(
                f'<tr data-connection-id="{_e(c["connectionId"])}"><td><code>{_e(c["connectionId"])}</code></td>'
                f"<td>{_e(c.get('providerId', ''))}</td><td>{_e(c.get('externalAccountEmail') or '')}</td>"
                f"<td>{_e(' '.join(c.get('scopesGranted', [])))}</td>"
                f"<td class=status>{_e(c.get('status', ''))}</td><td>{button}</td></tr>"
            )
        if not rows:
            return f"<p id=no-connections>No connections for schedule <code>{_e(schedule_id)}</code> yet.</p>"
        return (
            "<table id=connections><tr><th>connectionId</th><th>provider</th><th>account</th><th>scopes</th>"
            "<th>status</th><th></th></tr>" + "".join(rows) + "</table>"
        )

    def _page(
        self,
        status: int,
        outcome: str,
        connections: str,
        providers: list[dict[str, Any]],
        schedule_id: str = DEFAULT_SCHEDULE,
        chosen: str = "sandbox",
    ) -> Response:
        options = "".join(
            f'<option value="{_e(p["providerId"])}"{" selected" if p["providerId"] == chosen else ""}>'
            f"{_e(p['name'])} ({_e(p['providerId'])})</option>"
            for p in providers
        )
        body = (
            "<!doctype html><html lang=en><head><meta charset=utf-8>"
            '<meta name=viewport content="width=device-width,initial-scale=1">'
            f"<title>Calendar Connect demo</title><style>{_STYLE}</style></head><body>"
            "<h1>Calendar Connect demo</h1>"
            "<p>This page is a website of its own: its backend holds the dev API key and calls the API.</p>"
            f"{outcome}"
            '<form method=post action="/demo/connect"><fieldset><legend>Connect a calendar</legend>'
            f"<label>Provider <select name=providerId id=provider>{options}</select></label>"
            f'<label>Schedule id <input name=scheduleId id=schedule value="{_e(schedule_id)}" required></label>'
            "<label><input type=radio name=dialect value=wix checked> Wix dialect "
            "(<code>connect-by-oauth</code>)</label>"
            "<label><input type=radio name=dialect value=teamup> TeamUp dialect "
            "(<code>oauth2/initiate</code>)</label>"
            "<button type=submit id=connect>Connect</button></fieldset></form>"
            f"<h2>Connections of <code>{_e(schedule_id)}</code></h2>{connections}"
            f"{self.inbox.section()}"
            "</body></html>"
        )
        return Response(
            body,
            status,
            content_type="text/html; charset=utf-8",
            headers={"Cache-Control": "no-store", "Content-Security-Policy": _CSP, "Referrer-Policy": "same-origin"},
        )

    def _failure(self, request: Request, answer: httpx.Response) -> Response:
        try:
            body = answer.json()
            message = body.get("message", "")
            code = body.get("details", {}).get("applicationError", {}).get("code", "")
        except (ValueError, AttributeError):
            message, code = answer.text[:200], ""
        notice = (
            f"<section id=outcome class=bad data-outcome=api-error><p>The API answered "
            f"<code id=api-status>{answer.status_code}</code> <code>{_e(code)}</code>: {_e(message)}</p></section>"
        )
        return self._home(request, notice, status=answer.status_code if answer.status_code >= 400 else 502)

    # --- actions --------------------------------------------------------------------------------------

    def _connect(self, request: Request) -> Response:
        provider_id = request.form.get("providerId", "")
        schedule_id = request.form.get("scheduleId", "").strip() or DEFAULT_SCHEDULE
        return_url = self._home_url(scheduleId=schedule_id, providerId=provider_id)
        if request.form.get("dialect") == "teamup":
            source = next((p.get("calendarSource") for p in self._providers() if p["providerId"] == provider_id), None)
            answer = self._call(
                "POST",
                "/api/v2/external_calendars/accounts/oauth2/initiate",
                data={"calendar_source": source or "", "redirect_uri": return_url},
                headers={"TeamUp-Provider-ID": schedule_id},
            )
            target = answer.json().get("uri") if answer.status_code == 200 else None
        else:
            answer = self._call(
                "POST",
                "/v2/external-calendars/connections/connect-by-oauth",
                json={"providerId": provider_id, "scheduleId": schedule_id, "redirectUrl": return_url},
            )
            target = answer.json().get("oauthUrl") if answer.status_code == 200 else None
        if not target:
            return self._failure(request, answer)
        return Response(status=303, headers={"Location": target, "Cache-Control": "no-store"})

    def _disconnect(self, request: Request) -> Response:
        connection_id = request.form.get("connectionId", "")
        schedule_id = request.form.get("scheduleId", "") or DEFAULT_SCHEDULE
        answer = self._call("DELETE", f"/v2/external-calendars/connections/{quote(connection_id, safe='')}")
        if answer.status_code != 200:
            return self._failure(request, answer)
        revoked = answer.json().get("revokedAtProvider")
        location = self._home_url(
            scheduleId=schedule_id, disconnected=connection_id, revokedAtProvider=str(revoked).lower()
        )
        return Response(status=303, headers={"Location": location, "Cache-Control": "no-store"})
