"""/api/openapi.json matches the router, and real responses validate against its schemas."""

from typing import Any

from rooms.meeting import now
from server.api.openapi import document
from tests.apiclient import call
from tests.conftest import LiveServer

METHODS = {"get", "post", "patch", "delete", "put"}


def resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].removeprefix("#/components/schemas/")
        schema = doc["components"]["schemas"][name]
    return schema


def _type_ok(value: Any, kind: str) -> bool:
    checks: dict[str, Any] = {
        "object": lambda v: isinstance(v, dict),
        "array": lambda v: isinstance(v, list),
        "string": lambda v: isinstance(v, str),
        "boolean": lambda v: isinstance(v, bool),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "null": lambda v: v is None,
    }
    return bool(checks[kind](value))


def _utc_time(value: Any) -> bool:
    return isinstance(value, str) and len(value) >= 20 and value[10] == "T" and value[-1] == "Z"


def problems(doc: dict[str, Any], schema: dict[str, Any], value: Any, at: str = "$") -> list[str]:
    """What in `value` breaks `schema` (the subset of JSON Schema the document uses)."""
    schema = resolve(doc, schema)
    found: list[str] = []
    for part in schema.get("allOf", []):
        found += problems(doc, part, value, at)
    if "oneOf" in schema:
        matching = [s for s in schema["oneOf"] if not problems(doc, s, value, at)]
        if len(matching) != 1:
            found.append(f"{at}: matches {len(matching)} of oneOf")
    if "type" in schema and not _type_ok(value, schema["type"]):
        return [*found, f"{at}: {value!r} is not {schema['type']}"]
    if "enum" in schema and value not in schema["enum"]:
        found.append(f"{at}: {value!r} not in {schema['enum']}")
    if schema.get("format") == "date-time" and not _utc_time(value):
        found.append(f"{at}: {value!r} is not a UTC date-time")
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        found += [f"{at}: missing {k}" for k in schema.get("required", []) if k not in value]
        for key, item in value.items():
            if key in properties:
                found += problems(doc, properties[key], item, f"{at}.{key}")
            elif schema.get("additionalProperties") is False:
                found.append(f"{at}: unexpected {key}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            found += problems(doc, schema["items"], item, f"{at}[{i}]")
    return found


def response_schema(doc: dict[str, Any], path: str, method: str, status: int) -> dict[str, Any]:
    response = doc["paths"][path][method.lower()]["responses"][str(status)]
    return dict(response["content"]["application/json"]["schema"])


def test_document_lists_exactly_the_routes_under_api_whip_and_whep(
    live_server: LiveServer,
) -> None:
    # WHIP's and WHEP's OPTIONS (CORS preflight) and PATCH (405) are told in the descriptions.
    routed = {
        (route.method.lower(), route.resource.canonical)
        for route in live_server.app.router.routes()
        if route.resource is not None
        and route.resource.canonical.startswith(("/api/", "/whip/", "/whep/"))
        and route.method not in ("HEAD", "OPTIONS")
        and not (route.method == "PATCH" and route.resource.canonical.startswith("/wh"))
    }
    doc = document("http://example")
    documented = {
        (method, path)
        for path, item in doc["paths"].items()
        for method in item
        if method in METHODS
    }
    assert routed == documented


def test_every_reference_resolves_and_every_operation_has_errors() -> None:
    doc = document("http://example")
    assert doc["openapi"].startswith("3.1")
    text = repr(doc)
    for name in ("Meeting", "RosterEntry", "Stay", "Error"):
        assert name in doc["components"]["schemas"]
    refs = {part.split("'")[0] for part in text.split("#/components/schemas/")[1:]}
    assert refs <= set(doc["components"]["schemas"]), refs - set(doc["components"]["schemas"])
    schemes = {"apiKey", "hostToken", "adminSession", "meetingToken"}
    assert set(doc["components"]["securitySchemes"]) == schemes
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method in METHODS and path != "/api/openapi.json":
                assert "401" in op["responses"], (method, path)
                assert any(code.startswith("2") for code in op["responses"]), (method, path)


async def test_served_document_and_real_responses_validate(live_server: LiveServer) -> None:
    status, doc = await live_server.api("GET", "/api/openapi.json")
    assert status == 200
    assert doc["servers"] == [{"url": live_server.settings.base_url}]
    unauthenticated, _, _ = await call(live_server.url, "GET", "/api/openapi.json")
    assert unauthenticated == 200

    checked: list[tuple[str, str, int, Any]] = []

    async def check(method: str, path: str, template: str, **kwargs: Any) -> Any:
        status, body = await live_server.api(method, path, **kwargs)
        checked.append((method, template, status, body))
        return body

    m = "/api/meetings/{meeting_id}"
    created = await check(
        "POST", "/api/meetings", "/api/meetings", json={"title": "T", "host": {"name": "H"}}
    )
    mid = created["id"]
    await check("GET", "/api/meetings", "/api/meetings")
    await check("GET", f"/api/meetings/{mid}", m)
    await check("PATCH", f"/api/meetings/{mid}", m, json={"visibility": "public"})
    entry = await check(
        "POST", f"/api/meetings/{mid}/roster", m + "/roster", json={"name": "O", "role": "viewer"}
    )
    await check("GET", f"/api/meetings/{mid}/roster", m + "/roster")
    e = m + "/roster/{entry_id}"
    await check("PATCH", f"/api/meetings/{mid}/roster/{entry['id']}", e, json={"school": "S"})
    await check("POST", f"/api/meetings/{mid}/roster/{entry['id']}/link", e + "/link")
    await check("POST", f"/api/meetings/{mid}/links", m + "/links", json={"role": "viewer"})
    stay = await live_server.store.record_join(mid, entry["id"], "O", "viewer", "", "", now())
    await live_server.store.record_leave(stay, now())
    await live_server.store.record_join(mid, "guest", "G", "viewer", "", "", now())
    await check("GET", f"/api/meetings/{mid}/attendance", m + "/attendance")
    await check("GET", "/api/meetings/nope", m)
    await check("PATCH", f"/api/meetings/{mid}", m, json={"title": 1})
    await check("POST", "/api/meetings", "/api/meetings", data="x")
    await check("GET", "/api/meetings", "/api/meetings", headers={"Authorization": "Bearer no"})

    assert {s for *_, s, _ in checked} >= {200, 201, 400, 401, 404, 415}
    for method, template, status, body in checked:
        schema = response_schema(doc, template, method, status)
        assert problems(doc, schema, body) == [], (method, template, status, body)


def test_validator_catches_what_it_should() -> None:
    doc = document("http://example")
    meeting = {"$ref": "#/components/schemas/Meeting"}
    assert problems(doc, meeting, {"id": "x"})
    stay = {"$ref": "#/components/schemas/Stay"}
    bad_stay = {
        "person": "p",
        "name": "n",
        "role": "viewer",
        "school": "",
        "region": "",
        "joined_at": "yesterday",
        "left_at": None,
        "extra": 1,
    }
    assert len(problems(doc, stay, bad_stay)) == 2
