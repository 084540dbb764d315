"""GraphiQL assets served locally instead of from unpkg.com (no Neo4j needed)."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import pytest
import strawberry
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.routing import Route
from strawberry.asgi import GraphQL
from strawberry.http.ides import get_graphql_ide_html

from cmdb.api.graphiql import (
    ASSETS,
    ASSETS_PATH,
    LocalGraphiQL,
    integrity_mismatches,
    local_assets_dir,
    mount_assets,
    rewrite_html,
)

ROOT = Path(__file__).resolve().parent.parent
ORIGINAL = get_graphql_ide_html("graphiql")


@strawberry.type
class Query:
    @strawberry.field
    def hello(self) -> str:
        return "world"


SCHEMA = strawberry.Schema(query=Query)


def fake_assets(home: Path) -> Path:
    """A fake ``<home>/graphiql/node_modules`` with every allow-listed file plus some others."""
    modules = home / "graphiql" / "node_modules"
    for url_path, rel in ASSETS.items():
        path = modules / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"/* fake {url_path} */\n")
    (modules / "react" / "package.json").write_text('{"name": "react"}\n')
    (modules / "react" / "umd" / "react.development.js").write_text("/* not allowed */\n")
    (home / "secret.txt").write_text("secret\n")
    return modules


def sri(path: Path) -> str:
    return "sha384-" + base64.b64encode(hashlib.sha384(path.read_bytes()).digest()).decode()


def page_matching(modules: Path) -> str:
    """strawberry's page with each tag's integrity set to the hash of the fake file."""

    def fix(tag: re.Match[str]) -> str:
        text = tag.group(0)
        for url_path, rel in ASSETS.items():
            if f"https://unpkg.com/{url_path}\"" in text:
                return re.sub(r'integrity="[^"]*"', f'integrity="{sri(modules / rel)}"', text)
        return text

    return re.sub(r"<(?:script|link)\b[^>]*>", fix, ORIGINAL)


def serve_page(monkeypatch: pytest.MonkeyPatch, page: str) -> None:
    """Make strawberry's view (the parent class) serve ``page`` as its GraphiQL page."""
    monkeypatch.setattr(GraphQL, "graphql_ide_html", property(lambda _: page))


def make_view(assets_dir: Path | None) -> LocalGraphiQL[None, None]:
    return LocalGraphiQL(SCHEMA, assets_dir=assets_dir)


def test_local_assets_dir(tmp_path: Path) -> None:
    assert local_assets_dir(tmp_path) is None
    modules = fake_assets(tmp_path)
    assert local_assets_dir(tmp_path) == modules
    (modules / ASSETS["graphiql@3.8.3/graphiql.min.js"]).unlink()
    assert local_assets_dir(tmp_path) is None


def test_every_cdn_url_of_strawberrys_page_is_allow_listed() -> None:
    rewritten = rewrite_html(ORIGINAL)
    assert "unpkg.com" not in rewritten
    for url_path in ASSETS:
        assert f'"{ASSETS_PATH}/{url_path}"' in rewritten


def test_page_loads_local_assets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    modules = fake_assets(tmp_path)
    serve_page(monkeypatch, page_matching(modules))
    html = make_view(local_assets_dir(tmp_path)).graphql_ide_html
    assert "unpkg.com" not in html
    assert html.count(f'"{ASSETS_PATH}/') == len(ASSETS)
    assert integrity_mismatches(html, modules) == []


def test_page_served_over_http(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    modules = fake_assets(tmp_path)
    serve_page(monkeypatch, page_matching(modules))
    app = FastAPI()
    # The view is an ASGI app, which a Starlette route takes as its endpoint.
    app.router.routes.append(Route("/graphql", make_view(modules)))
    mount_assets(app, modules)
    with TestClient(app) as client:
        page = client.get("/graphql", headers={"accept": "text/html"})
        assert page.status_code == 200
        assert "unpkg.com" not in page.text
        for url in re.findall(r'(?:src|href)="(/graphiql-assets/[^"]+)"', page.text):
            assert client.get(url).status_code == 200, url


def test_files_not_matching_the_page_integrity_fall_back_to_the_cdn(tmp_path: Path) -> None:
    modules = fake_assets(tmp_path)  # fake contents: strawberry's SRI hashes cannot match
    assert make_view(modules).graphql_ide_html == ORIGINAL


def test_without_assets_the_page_is_strawberrys(tmp_path: Path) -> None:
    assert make_view(None).graphql_ide_html == ORIGINAL
    assert make_view(None).graphql_ide_html == GraphQL(SCHEMA).graphql_ide_html
    modules = fake_assets(tmp_path)
    router: LocalGraphiQL[None, None] = LocalGraphiQL(
        SCHEMA, graphql_ide="apollo-sandbox", assets_dir=modules
    )
    assert router.graphql_ide_html == get_graphql_ide_html("apollo-sandbox")


@pytest.mark.skipif(local_assets_dir(ROOT / ".cmdb") is None,
                    reason="scripts/graphiql-assets has not been run")
def test_installed_assets_match_strawberrys_integrity() -> None:
    modules = local_assets_dir(ROOT / ".cmdb")
    assert modules is not None
    html = make_view(modules).graphql_ide_html
    assert "unpkg.com" not in html
    assert integrity_mismatches(html, modules) == []


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    app = FastAPI()
    mount_assets(app, fake_assets(tmp_path))
    return TestClient(app)


@pytest.mark.parametrize(
    ("url_path", "content_type"),
    [
        ("graphiql@3.8.3/graphiql.min.js", "text/javascript; charset=utf-8"),
        ("graphiql@3.8.3/graphiql.min.css", "text/css; charset=utf-8"),
        ("@graphiql/plugin-explorer@1.0.2/dist/index.umd.js", "text/javascript; charset=utf-8"),
        ("@graphiql/plugin-explorer@1.0.2/dist/style.css", "text/css; charset=utf-8"),
    ],
)
def test_serves_allow_listed_files(client: TestClient, url_path: str, content_type: str) -> None:
    response = client.get(f"{ASSETS_PATH}/{url_path}")
    assert response.status_code == 200
    assert response.headers["content-type"] == content_type
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.text == f"/* fake {url_path} */\n"
    assert client.head(f"{ASSETS_PATH}/{url_path}").status_code == 200


@pytest.mark.parametrize(
    "url",
    [
        # traversal: raw (the client normalises it away) and percent-encoded (reaches the
        # route with `..` in the path parameter)
        f"{ASSETS_PATH}/react@18.2.0/umd/../../../../secret.txt",
        f"{ASSETS_PATH}/react@18.2.0/umd/%2e%2e/%2e%2e/%2e%2e/%2e%2e/secret.txt",
        f"{ASSETS_PATH}/..%2f..%2f..%2fsecret.txt",
        f"{ASSETS_PATH}/react@18.2.0/umd/..%2F..%2Fpackage.json",
        # real files that are not allow-listed
        f"{ASSETS_PATH}/react@18.2.0/package.json",
        f"{ASSETS_PATH}/react@18.2.0/umd/react.development.js",
        f"{ASSETS_PATH}/react/umd/react.production.min.js",
        f"{ASSETS_PATH}/react@18.3.0/umd/react.production.min.js",
        # directories: no listing
        f"{ASSETS_PATH}/",
        f"{ASSETS_PATH}/react@18.2.0/umd/",
        f"{ASSETS_PATH}/react@18.2.0/umd",
    ],
)
def test_everything_else_is_404(client: TestClient, url: str) -> None:
    response = client.get(url)
    assert response.status_code == 404
    assert "secret" not in response.text


def test_read_only(client: TestClient) -> None:
    url = f"{ASSETS_PATH}/graphiql@3.8.3/graphiql.min.js"
    assert client.post(url).status_code == 405
    assert client.put(url, content=b"x").status_code == 405
