"""The one place that owns the Logger, Tracer and Metrics; everything else imports them from here."""

from aws_lambda_powertools import Logger, Metrics, Tracer

logger = Logger()
tracer = Tracer()
metrics = Metrics()
