# The admin form test signs in as ML staff, as the selector's admin tests do.
from tests.selector.conftest import ml_staff, staff_client  # noqa: F401
