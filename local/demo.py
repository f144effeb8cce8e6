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
# The contract's failure reasons, said for a person (the codes stay beside them).
OUTCOME_MESSAGES = {
    "access_denied": "Access was declined on the provider's consent page.",
    "consent_required": "The provider needs the person's consent, which was not given.",
    "scope_not_granted": "Access was granted without the calendar permission, which a connection needs.",
    "account_type_not_supported": "This kind of account cannot be used with this application.",
    "admin_consent_required": "The person's organisation must approve this application first (an administrator).",
    "no_refresh_token": "The provider gave no refresh token, so the connection could not last; nothing was kept.",
    "expired": "The sign-in took longer than the attempt's time limit. Start again.",
    "issuer_mismatch": "The answer did not come from the provider the attempt was started with; it was refused.",
    "browser_mismatch": "The sign-in was finished in another browser than the one that started it; refused.",
    "token_exchange_failed": "The provider did not complete the code exchange (error, timeout or bad answer).",
    "storage_unavailable": "Our storage was unavailable; nothing was connected. Try again.",
    "client_revoked": "The website's API client was revoked meanwhile; nothing was kept.",
    "provider_error": "The provider reported an error.",
}
ERROR_MESSAGES = {
    "reject": "The person declined.",
    "unsupported": "This account or grant cannot be used for a connection.",
    "internal": "Something went wrong on the way back.",
}
API_ERROR_MESSAGES = {
    "PROVIDER_NOT_CONFIGURED": "This provider has no OAuth client in this deployment (see the README).",
    "NOT_SUPPORTED_BY_PROVIDER": "This provider does not connect by OAuth.",
    "PERMISSION_DENIED": "The return URL is outside the API client's allowed prefixes.",
    "INVALID_ARGUMENT": "The request was not valid.",
    "NOT_FOUND": "Unknown provider or connection.",
    "UNAVAILABLE": "Storage or a provider is unavailable; try again shortly.",
}
_CSP = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'"
_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem;color:#222}"
    "fieldset{border:1px solid #ccc;padding:1rem;margin:1rem 0}label{display:block;margin:.5rem 0}"
    "table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;padding:.3rem;text-align:left}"
    ".ok{background:#e8f6e8;padding:.8rem}.bad{background:#fbe9e9;padding:.8rem}code{word-break:break-all}"
    ".hint{color:#555;font-size:.9rem;margin:.2rem 0 .6rem 1.6rem}.hint code{word-break:normal}"
    ".codes{color:#555;font-size:.9rem}"
    "details{margin:1rem 0}summary{cursor:pointer}"
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
        schedule_id = args.get("scheduleId") or self._schedule_of(args.get("connectionId")) or DEFAULT_SCHEDULE
        chosen = args.get("providerId") or "sandbox"
        outcome = notice or self._outcome(args, schedule_id)
        providers = self._providers()
        return self._page(status, outcome, self._connections(schedule_id), providers, schedule_id, chosen)

    def _schedule_of(self, connection_id: str | None) -> str | None:
        """A return URL without our scheduleId (a connection started elsewhere, e.g. the README's tour): ask the API
        whose schedule the connection belongs to, so the table below is that schedule's."""
        if not connection_id:
            return None
        try:
            answer = self._call("GET", f"/v2/external-calendars/connections/{quote(connection_id, safe='')}")
            if answer.status_code == 200:
                return str(answer.json()["connection"]["scheduleId"])
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            pass
        return None

    @staticmethod
    def _outcome(args: Any, schedule_id: str) -> str:
        if args.get("connectionId"):
            dialect = " (TeamUp dialect: success=1)" if args.get("success") == "1" else ""
            return (
                f"<section id=outcome class=ok data-outcome=connected><p><strong>Connected{_e(dialect)}.</strong> "
                f"The calendar account is now connected to schedule <code>{_e(schedule_id)}</code>; the website "
                f"keeps this connectionId: <code id=connection-id>{_e(args['connectionId'])}</code></p></section>"
            )
        if args.get("error"):
            dialect = " (TeamUp dialect: success=0)" if args.get("success") == "0" else ""
            reason = args.get("reason", "")
            explained = OUTCOME_MESSAGES.get(reason) or ERROR_MESSAGES.get(args["error"], "The connection failed.")
            return (
                f"<section id=outcome class=bad data-outcome=failed><p><strong>Not connected{_e(dialect)}.</strong> "
                f"{_e(explained)}</p><p class=codes>error <code id=error>{_e(args['error'])}</code>, "
                f"reason <code id=reason>{_e(reason)}</code></p></section>"
            )
        if args.get("disconnected"):
            revoked = args.get("revokedAtProvider", "")
            said = {
                "true": "The provider confirmed the tokens are revoked.",
                "false": "The provider did not confirm the revocation; our copy of the tokens is erased anyway.",
            }.get(revoked, "This provider offers no revocation; our copy of the tokens is erased.")
            return (
                f"<section id=outcome class=ok data-outcome=disconnected><p><strong>Disconnected</strong> "
                f"<code>{_e(args['disconnected'])}</code>. {_e(said)}</p><p class=codes>revokedAtProvider "
                f"<code id=revoked>{_e(revoked)}</code></p></section>"
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
        if not providers:
            options = "<option value=''>No provider can connect here</option>"
        body = (
            "<!doctype html><html lang=en><head><meta charset=utf-8>"
            '<meta name=viewport content="width=device-width,initial-scale=1">'
            f"<title>Calendar Connect demo</title><style>{_STYLE}</style></head><body>"
            "<h1>Calendar Connect demo</h1>"
            "<p>This page plays a booking website. Its backend holds the dev API key (the one <code>make run</code> "
            "printed) and calls the Calendar Connect API; your browser only ever sees the consent page and comes "
            "back here with the outcome. Everything runs on this machine: the provider offered below is the "
            "local <em>sandbox</em>, whose consent page lets you approve, deny, or approve without the calendar "
            "permission.</p>"
            f"{outcome}"
            '<form method=post action="/demo/connect"><fieldset><legend>Connect a calendar</legend>'
            f"<label>Provider <select name=providerId id=provider>{options}</select></label>"
            "<p class=hint>Only providers that can finish a connection here are listed: Google and Microsoft "
            "appear once their OAuth clients are configured (see the README on using Google or Microsoft locally).</p>"
            f'<label>Schedule <input name=scheduleId id=schedule value="{_e(schedule_id)}" required></label>'
            "<p class=hint>A schedule is the website's own name for whose calendar this is: a staff member, a "
            "room, a team. The connection is stored under it, and the website lists connections by it.</p>"
            "<label><input type=radio name=dialect value=wix checked> Wix dialect</label>"
            "<p class=hint><code>POST /v2/external-calendars/connections/connect-by-oauth</code> with JSON "
            "<code>{providerId, scheduleId, redirectUrl}</code>; the browser comes back with "
            "<code>?connectionId=</code> or <code>?error=&amp;reason=</code>.</p>"
            "<label><input type=radio name=dialect value=teamup> TeamUp dialect</label>"
            "<p class=hint><code>POST /api/v2/external_calendars/accounts/oauth2/initiate</code> with a form "
            "<code>calendar_source, redirect_uri</code> and the schedule in the <code>TeamUp-Provider-ID</code> "
            "header; the browser comes back with <code>?success=1&amp;connectionId=</code> or "
            "<code>?success=0&amp;error=&amp;reason=</code>.</p>"
            "<button type=submit id=connect>Connect</button></fieldset></form>"
            f"<h2>Connections of schedule <code>{_e(schedule_id)}</code></h2>{connections}"
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
        explained = API_ERROR_MESSAGES.get(code, "")
        notice = (
            f"<section id=outcome class=bad data-outcome=api-error><p><strong>The API refused to start.</strong> "
            f"{_e(explained or message)}</p><p class=codes>HTTP <code id=api-status>{answer.status_code}</code> "
            f"<code id=api-code>{_e(code)}</code>: {_e(message)}</p></section>"
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
