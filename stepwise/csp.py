"""Content-Security-Policy on every response (Django 5.2 has none built in).

The annotator page, the sign-in pages and the API run on the strict policy: scripts and
stylesheets only from our own origin, no inline scripts, no eval, no other hosts. KaTeX sizes
its boxes with ``style`` attributes, hence ``style-src-attr 'unsafe-inline'`` (attributes
cannot run script; ``<style>`` elements stay refused). Django's admin pages (the dashboard and
the selector pages among them) and the Swagger page inline styles of their own, so below those
prefixes inline styles are allowed too; inline scripts never are.
"""

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

HEADER = "Content-Security-Policy"
# Paths whose pages carry inline <style> blocks or style attributes they do not own.
INLINE_STYLE_PREFIXES = ("/admin/", "/api/docs/")


def csp_policy(*, inline_styles: bool) -> str:
    style = "'self' 'unsafe-inline'" if inline_styles else "'self'"
    directives = {
        "default-src": "'self'",
        "script-src": "'self'",
        "style-src": style,
        "style-src-attr": "'unsafe-inline'",
        "img-src": "'self' data:",  # data: for the blank favicon and Swagger's icons
        "font-src": "'self' data:",  # Vite inlines the smallest KaTeX font
        "connect-src": "'self'",
        "object-src": "'none'",
        "base-uri": "'none'",
        "form-action": "'self'",
        "frame-ancestors": "'none'",
    }
    return "; ".join(f"{name} {value}" for name, value in directives.items())


STRICT = csp_policy(inline_styles=False)
INLINE_STYLES = csp_policy(inline_styles=True)


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if HEADER not in response:
            relaxed = request.path.startswith(INLINE_STYLE_PREFIXES)
            response[HEADER] = INLINE_STYLES if relaxed else STRICT
        return response
