"""The annotator's rating page: a Django shell around the TypeScript app that Vite builds.

The page itself is static; everything it does goes through the annotator API. The template
finds the hashed bundle names in Vite's manifest (``frontend/dist/.vite/manifest.json``).
"""

import json
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie

FRONTEND_ENTRY = "src/main.ts"


class FrontendNotBuilt(Exception):
    pass


@dataclass(frozen=True)
class FrontendAssets:
    script: str  # paths relative to STATIC_URL
    styles: tuple[str, ...]


_manifest_cache: dict[Path, tuple[float, dict]] = {}


def _manifest_path() -> Path:
    return Path(settings.FRONTEND_DIST) / ".vite" / "manifest.json"


def frontend_assets(entry: str = FRONTEND_ENTRY) -> FrontendAssets:
    """The built files for ``entry``; raises FrontendNotBuilt with the fix when absent.

    Read from frontend/dist rather than STATIC_ROOT: collectstatic skips dot-directories,
    so ``.vite/`` never reaches STATIC_ROOT. Cached until the file changes (a rebuild).
    """
    path = _manifest_path()
    try:
        mtime = path.stat().st_mtime
    except FileNotFoundError as error:
        raise FrontendNotBuilt(f"{path} is missing: run `make frontend`") from error
    cached = _manifest_cache.get(path)
    if cached is None or cached[0] != mtime:
        cached = (mtime, json.loads(path.read_text(encoding="utf-8")))
        _manifest_cache[path] = cached
    chunk = cached[1].get(entry)
    if not chunk:
        raise FrontendNotBuilt(f"{path} has no entry {entry!r}: run `make frontend`")
    return FrontendAssets(script=chunk["file"], styles=tuple(chunk.get("css", ())))


@login_required
@ensure_csrf_cookie
def label_page(request: HttpRequest) -> HttpResponse:
    try:
        assets = frontend_assets()
    except FrontendNotBuilt as error:
        return render(request, "labeling/label_unbuilt.html", {"error": str(error)}, status=503)
    return render(request, "labeling/label.html", {"assets": assets})
