"""Sign-in lockout per address across usernames, on top of axes' per (username, address) lock.

axes compares every lockout parameter group with one ``AXES_FAILURE_LIMIT``. Per (username,
address) that limit is small (five guesses at one account); per address alone it must be larger,
or a few typos by the people of an office behind one address would lock them all out. This
handler keeps axes' counting and adds the address's own limit,
``STEPWISE_LOGIN_ADDRESS_FAILURE_LIMIT``: once the failures recorded from an address within the
cool-off reach it, that address is locked for every username, the right password included.

A success resets only its own (username, address) record (``AXES_RESET_ON_SUCCESS``), so a
sprayer who owns one account cannot clear the address's count by signing into it.
"""

from typing import Any

from axes.attempts import get_cool_off_threshold
from axes.handlers.database import AxesDatabaseHandler
from axes.models import AccessAttempt
from django.conf import settings
from django.db.models import Sum
from django.http import HttpRequest


class AddressLimitHandler(AxesDatabaseHandler):
    def get_failures(self, request: HttpRequest, credentials: dict[str, Any] | None = None) -> int:
        failures: int = super().get_failures(request, credentials)
        address = getattr(request, "axes_ip_address", None)
        if address is None or failures >= settings.AXES_FAILURE_LIMIT:
            return failures
        attempts = AccessAttempt.objects.filter(ip_address=address)
        if settings.AXES_COOLOFF_TIME is not None:
            attempts = attempts.filter(attempt_time__gte=get_cool_off_threshold(request))
        from_address = attempts.aggregate(total=Sum("failures_since_start"))["total"] or 0
        if from_address >= settings.STEPWISE_LOGIN_ADDRESS_FAILURE_LIMIT:
            # Reported as a full count, so axes locks and shows its lockout page.
            return max(failures, settings.AXES_FAILURE_LIMIT)
        return failures
