"""Python client for Stepwise's staff API: ``Stepwise(url, token)``."""

from stepwise_client.client import Job, Stepwise
from stepwise_client.errors import APIError, JobFailed, JobTimeout, StepwiseError

__all__ = ["APIError", "Job", "JobFailed", "JobTimeout", "Stepwise", "StepwiseError"]
