"""The demo accounts, fixed so that ``make run`` can print them in its banner: demo use only.

Plain data with no Django imports, so the launcher reads it before Django is set up.
"""

# (username, password, role)
DEMO_LOGINS: list[tuple[str, str, str]] = [
    ("admin", "stepwise-admin-demo", "superuser: Django admin, dashboards, imports"),
    ("annotator", "stepwise-annotator-demo", "annotator: rates steps at /label/"),
    ("mlstaff", "stepwise-mlstaff-demo", "ML staff: selector versions and jobs"),
]
