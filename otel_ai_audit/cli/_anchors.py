"""Where the anchors are: the options `anchor` and `verify --anchors` share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from otel_ai_audit.anchor.publish import DEFAULT_RETENTION_DAYS
from otel_ai_audit.anchor.s3 import AnchorBucket

F = TypeVar("F", bound=Callable[..., Any])


def s3_options(function: F) -> F:
    for option in reversed([
        click.option("--s3-endpoint", envvar="OTEL_AI_AUDIT_ANCHOR_S3_ENDPOINT", metavar="URL",
                     help="S3-compatible endpoint other than AWS (default: "
                          "$OTEL_AI_AUDIT_ANCHOR_S3_ENDPOINT; credentials from the AWS "
                          "variables or profiles, as boto3 reads them)."),
        click.option("--s3-region", envvar="OTEL_AI_AUDIT_ANCHOR_S3_REGION", metavar="REGION",
                     help="Region of the bucket (default: $OTEL_AI_AUDIT_ANCHOR_S3_REGION)."),
    ]):
        function = option(function)
    return function


def anchor_bucket(location: str, s3_endpoint: str | None, s3_region: str | None) -> AnchorBucket:
    return AnchorBucket(location, endpoint_url=s3_endpoint, region=s3_region)


def anchor_check_options(anchors_help: str) -> Callable[[F], F]:
    """`--anchors` (with `anchors_help`), `--tsa-cert`, `--min-retention-days` and the S3
    options: what checking a trail against its anchors needs (`verify`, `evidence`)."""
    def decorate(function: F) -> F:
        for option in reversed([
            click.option("--anchors", "anchors_at", metavar="s3://BUCKET/PREFIX",
                         help=anchors_help),
            click.option("--tsa-cert", type=click.Path(dir_okay=False),
                         help="With --anchors: the time-stamping authority's certificate "
                              "chain (PEM), to check every anchor's RFC 3161 time-stamp."),
            click.option("--min-retention-days", type=int, default=DEFAULT_RETENTION_DAYS,
                         show_default=True, help="With --anchors: the compliance-mode "
                                                 "retention each anchor must have."),
        ]):
            function = option(function)
        return s3_options(function)

    return decorate
