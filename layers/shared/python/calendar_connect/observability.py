"""The one place that owns the Logger, Tracer and Metrics; everything else imports them from here."""

import logging

from aws_lambda_powertools import Logger, Metrics, Tracer

logger = Logger()
# Not auto_patch: it patches every library the X-Ray SDK knows that is installed, importing each one (httpx
# among them, ~15 ms of a cold start). botocore now; httpx when the first provider call creates its client.
tracer = Tracer(auto_patch=False)
tracer.patch(["botocore"])
metrics = Metrics()

# At DEBUG these libraries log whole requests and answers: PKCE verifiers on their way to DynamoDB,
# KMS data keys in plaintext. They stay at WARNING whatever level the function logs at.
for _wire_logger in ("botocore", "boto3", "urllib3", "s3transfer", "httpx", "httpcore"):
    logging.getLogger(_wire_logger).setLevel(logging.WARNING)
