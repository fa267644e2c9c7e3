"""The package version, as installed."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("otel-ai-audit")
except PackageNotFoundError:
    __version__ = "0.0.0"
