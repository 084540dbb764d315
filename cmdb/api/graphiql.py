"""GraphiQL without a CDN: serve the page's JS/CSS from a local npm install.

strawberry's GraphiQL page loads React, GraphiQL, the explorer plugin and js-cookie from
unpkg.com. ``scripts/graphiql-assets`` installs exactly those files from the npm registry into
``<home>/graphiql/node_modules``; :class:`LocalGraphiQL` rewrites the page to load them
from ``/graphiql-assets/...`` and :func:`mount_assets` serves them (an allow-list, nothing
else). Without the local files everything behaves like strawberry's own view (CDN).

The versions below are the ones strawberry-graphql's ``static/graphiql.html`` pins, and the
files must hash to the page's ``integrity`` attributes; if strawberry's page changes and no
longer matches, the router logs a warning and serves the original (CDN) page.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
from pathlib import Path
from typing import Any, TypeVar

from fastapi import FastAPI
from fastapi.responses import FileResponse, PlainTextResponse, Response
from strawberry.asgi import GraphQL

log = logging.getLogger("cmdb.api.graphiql")

ASSETS_PATH = "/graphiql-assets"
"""URL prefix under which :func:`mount_assets` serves the files."""

CDN_PREFIX = "https://unpkg.com/"

ASSETS: dict[str, str] = {
    "react@18.2.0/umd/react.production.min.js": "react/umd/react.production.min.js",
    "react-dom@18.2.0/umd/react-dom.production.min.js":
        "react-dom/umd/react-dom.production.min.js",
    "js-cookie@3.0.5/dist/js.cookie.min.js": "js-cookie/dist/js.cookie.min.js",
    "graphiql@3.8.3/graphiql.min.css": "graphiql/graphiql.min.css",
    "graphiql@3.8.3/graphiql.min.js": "graphiql/graphiql.min.js",
    "@graphiql/plugin-explorer@1.0.2/dist/style.css": "@graphiql/plugin-explorer/dist/style.css",
    "@graphiql/plugin-explorer@1.0.2/dist/index.umd.js":
        "@graphiql/plugin-explorer/dist/index.umd.js",
}
"""Allow-list: URL path below ``ASSETS_PATH`` (= unpkg path) -> file below node_modules."""

_CONTENT_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
_TAG = re.compile(r"<(?:script|link)\b[^>]*>", re.IGNORECASE)
_URL_ATTR = re.compile(r"\b(?:src|href)\s*=\s*\"([^\"]*)\"", re.IGNORECASE)
_INTEGRITY_ATTR = re.compile(r"\bintegrity\s*=\s*\"([^\"]*)\"", re.IGNORECASE)
_SRI_ALGORITHMS = {"sha256", "sha384", "sha512"}

Context = TypeVar("Context")
RootValue = TypeVar("RootValue")


def local_assets_dir(home: Path) -> Path | None:
    """``<home>/graphiql/node_modules`` if every file the page needs is there, else None."""
    modules = home / "graphiql" / "node_modules"
    if all((modules / rel).is_file() for rel in ASSETS.values()):
        return modules
    return None


def rewrite_html(html: str) -> str:
    """Point the allow-listed unpkg.com URLs of a GraphiQL page at ``ASSETS_PATH``.

    ``integrity`` and ``crossorigin`` stay: the npm files are byte-identical to unpkg's, so the
    browser still checks them (see :func:`integrity_mismatches`).
    """
    for url_path in ASSETS:
        html = html.replace(f'"{CDN_PREFIX}{url_path}"', f'"{ASSETS_PATH}/{url_path}"')
    return html


def _sri_matches(expected: str, data: bytes) -> bool:
    """True if any well-formed token of an ``integrity`` value matches ``data``."""
    for token in expected.split():
        algorithm, _, rest = token.partition("-")
        digest = rest.split("?", 1)[0]
        if algorithm in _SRI_ALGORITHMS and digest:
            actual = base64.b64encode(hashlib.new(algorithm, data).digest()).decode()
            if actual == digest:
                return True
    return False


def integrity_mismatches(html: str, assets_dir: Path) -> list[str]:
    """Local URLs in ``html`` whose file is missing or fails the tag's ``integrity``."""
    bad: list[str] = []
    prefix = f"{ASSETS_PATH}/"
    for tag in _TAG.findall(html):
        url = _URL_ATTR.search(tag)
        if url is None or not url.group(1).startswith(prefix):
            continue
        rel = ASSETS.get(url.group(1)[len(prefix):])
        path = assets_dir / rel if rel is not None else None
        if path is None or not path.is_file():
            bad.append(url.group(1))
            continue
        integrity = _INTEGRITY_ATTR.search(tag)
        if integrity is not None and not _sri_matches(integrity.group(1), path.read_bytes()):
            bad.append(url.group(1))
    return bad


class LocalGraphiQL(GraphQL[Context, RootValue]):
    """strawberry's ASGI GraphQL view whose GraphiQL page loads its assets from this server.

    ``assets_dir`` is the node_modules folder (see :func:`local_assets_dir`); the app must also
    call :func:`mount_assets` with it. With ``assets_dir=None``, or an IDE other than GraphiQL,
    the page is strawberry's own (CDN).
    """

    def __init__(self, *args: Any, assets_dir: Path | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.assets_dir = assets_dir
        self._local_html: tuple[str, str] | None = None  # (original, page to serve)

    @property
    def graphql_ide_html(self) -> str:
        original = super().graphql_ide_html
        if self.assets_dir is None or self.graphql_ide != "graphiql":
            return original
        if self._local_html is None or self._local_html[0] != original:
            self._local_html = (original, self._localize(original, self.assets_dir))
        return self._local_html[1]

    @staticmethod
    def _localize(original: str, assets_dir: Path) -> str:
        html = rewrite_html(original)
        if CDN_PREFIX in html:
            log.warning("GraphiQL page loads CDN files this server does not have; using the CDN")
            return original
        bad = integrity_mismatches(html, assets_dir)
        if bad:
            log.warning("local GraphiQL assets missing or not matching the page's integrity "
                        "(%s); using the CDN", ", ".join(bad))
            return original
        return html


def mount_assets(app: FastAPI, assets_dir: Path) -> None:
    """Serve the allow-listed files below ``assets_dir`` at ``ASSETS_PATH/<pkg>@<ver>/<path>``.

    Anything not in :data:`ASSETS` is a 404; there is no directory listing and no path is
    ever built from the request, so ``..`` cannot escape.
    """
    files = {url_path: assets_dir / rel for url_path, rel in ASSETS.items()}

    async def graphiql_asset(asset: str) -> Response:
        path = files.get(asset)
        if path is None or not path.is_file():
            return PlainTextResponse("Not Found", status_code=404)
        return FileResponse(
            path,
            media_type=_CONTENT_TYPES[path.suffix],
            headers={
                # The URL carries the version, so the content never changes.
                "Cache-Control": "public, max-age=31536000, immutable",
                "X-Content-Type-Options": "nosniff",
            },
        )

    app.add_api_route(f"{ASSETS_PATH}/{{asset:path}}", graphiql_asset,
                      methods=["GET", "HEAD"], include_in_schema=False)


__all__ = [
    "ASSETS",
    "ASSETS_PATH",
    "LocalGraphiQL",
    "integrity_mismatches",
    "local_assets_dir",
    "mount_assets",
    "rewrite_html",
]
