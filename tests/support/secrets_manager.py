"""AWS Secrets Manager's GetSecretValue over HTTP on 127.0.0.1: no Secrets Manager can run here.

A fake at the edge only: boto3 (through Powertools' parameters utility, as in Lambda) signs and sends its real
JSON-protocol request to this server (AWS_ENDPOINT_URL_SECRETS_MANAGER), which answers what AWS answers.
"""

from __future__ import annotations

import json
from typing import Any

from werkzeug.wrappers import Request, Response

from local.serving import ServerThread


class SecretsManagerEndpoint:
    def __init__(self) -> None:
        self.secrets: dict[str, str] = {}
        self.requests: list[str] = []
        self._server = ServerThread(self, name="secretsmanager", quiet=True)
        self.endpoint = self._server.url

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        target = request.headers.get("X-Amz-Target", "")
        self.requests.append(target)
        secret_id = json.loads(request.get_data() or b"{}").get("SecretId", "")
        if target != "secretsmanager.GetSecretValue" or secret_id not in self.secrets:
            body = {"__type": "ResourceNotFoundException", "message": "Secrets Manager can't find the secret."}
            response = Response(json.dumps(body), 400, content_type="application/x-amz-json-1.1")
        else:
            body = {"ARN": secret_id, "Name": secret_id, "SecretString": self.secrets[secret_id], "VersionId": "v1"}
            response = Response(json.dumps(body), 200, content_type="application/x-amz-json-1.1")
        return response(environ, start_response)

    def start(self) -> SecretsManagerEndpoint:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()
