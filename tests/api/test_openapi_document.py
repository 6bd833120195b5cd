"""/openapi.json is what a client generator needs (response models, the deploy body, the bearer
scheme, the error body on every refusal, no internal notes), and the bugs the conformance run
(test_openapi_conformance.py) found stay fixed."""
from __future__ import annotations

import re

import pytest

from frazil.api.models import ErrorBody

ERROR_REF = "#/components/schemas/ErrorBody"


@pytest.fixture
async def spec(frazil):
    response = await frazil.documented.get("/openapi.json")
    assert response.status_code == 200
    return response.json()


def _operations(spec):
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            yield path, method.upper(), operation


class TestTheDocument:
    async def test_every_success_has_a_schema(self, spec):
        """No 200 is a bare string or an untyped object: each names its model (or, for a
        function's own HTTP endpoint, is the default answer)."""
        for path, method, operation in _operations(spec):
            answers = operation["responses"]
            if path.startswith("/fn/"):
                assert set(answers) == {"default"}, (method, path)
                continue
            ok = answers.get("200") or answers["202"]
            schema = next(iter(ok["content"].values()))["schema"]
            assert schema.get("$ref") or path == "/metrics", (method, path, schema)

    async def test_every_refusal_is_the_error_body(self, spec):
        for path, method, operation in _operations(spec):
            for status, answer in operation["responses"].items():
                if status.startswith(("4", "5")):
                    schema = answer["content"]["application/json"]["schema"]
                    expected = "#/components/schemas/Health" if path == "/healthz" else ERROR_REF
                    assert schema == {"$ref": expected}, (method, path, status)
        assert "HTTPValidationError" not in spec["components"]["schemas"]

    async def test_statuses_of_some_routes(self, spec):
        def statuses(path, method):
            return set(spec["paths"][path][method]["responses"])

        assert statuses("/v1/functions/{name}/invoke", "post") == {"200", "202", "400", "401", "403", "404", "413",
                                                                  "429", "503"}
        assert statuses("/v1/functions/{name}", "put") >= {"200", "400", "401", "403", "413", "503"}
        assert statuses("/v1/functions/{name}/rollback", "post") >= {"404", "409"}
        for answer in ("429", "503"):
            assert "Retry-After" in spec["paths"]["/v1/auth/login"]["post"]["responses"][answer]["headers"]

    async def test_the_bearer_scheme_is_declared_and_used(self, spec):
        assert spec["components"]["securitySchemes"]["bearer"] == {
            "type": "http", "scheme": "bearer", "description": spec["components"]["securitySchemes"]["bearer"][
                "description"]}
        paths = spec["paths"]
        assert paths["/v1/functions"]["get"]["security"] == [{"bearer": []}]
        # Optional where a public function or table takes no token.
        assert paths["/v1/functions/{name}/invoke"]["post"]["security"] == [{"bearer": []}, {}]
        assert paths["/v1/tables/{table}/records"]["get"]["security"] == [{"bearer": []}, {}]
        assert "security" not in paths["/healthz"]["get"]

    async def test_the_deploy_body_is_multipart_bundle_and_config(self, spec):
        body = spec["paths"]["/v1/functions/{name}"]["put"]["requestBody"]["content"]["multipart/form-data"]
        assert body["schema"]["required"] == ["bundle"]
        assert body["schema"]["properties"]["bundle"] == {"type": "string", "format": "binary",
                                                          "description": body["schema"]["properties"]["bundle"][
                                                              "description"]}
        assert body["schema"]["properties"]["config"] == {"$ref": "#/components/schemas/DeployConfig"}
        assert body["encoding"]["config"]["contentType"] == "application/json"
        config = spec["components"]["schemas"]["DeployConfig"]
        assert {"runtime", "memory", "timeout", "env", "access", "http", "triggers"} <= set(config["properties"])

    async def test_no_internal_notes_in_the_text(self, spec):
        """Descriptions speak to API users: no module paths, no notes to developers."""
        texts = [spec["info"]["description"]]
        for _, _, operation in _operations(spec):
            texts += [operation.get("summary", ""), operation.get("description", "")]
            texts += [p.get("description", "") for p in operation.get("parameters", [])]
        for text in texts:
            assert not re.search(r"frazil\.[a-z_]+\.|fast ?path|TODO|XXX", text, re.I), text


class TestFoundByTheConformanceRun:
    async def test_405_allows_every_method_of_the_path(self, frazil):
        """Starlette named only the first route's method: FastAPI makes one route per method."""
        response = await frazil.documented.request("OPTIONS", "/v1/functions/some-fn")
        assert response.status_code == 405
        assert response.headers["allow"] == "DELETE, GET, PATCH, PUT"
        assert response.json()["error"]["type"] == "MethodNotAllowed"

    async def test_an_empty_cursor_is_no_cursor(self, frazil):
        for path in ("/v1/functions", "/v1/tables", "/v1/invocations"):
            response = await frazil.documented.get(path, params={"cursor": ""})
            assert response.status_code == 200, (path, response.text)

    async def test_empty_filters_filter_nothing(self, frazil):
        response = await frazil.documented.get("/v1/invocations", params={"function": "", "status": "", "mode": ""})
        assert response.status_code == 200, response.text

    @pytest.mark.parametrize("patch", [{"http": 0}, {"http": "yes"}, {"resident": "2"}, {"resident": 1.0}])
    async def test_patch_settings_are_not_coerced(self, frazil, patch):
        """0 is not false and "2" is not 2: the document says boolean and integer."""
        await frazil.deploy("strict")
        response = await frazil.documented.patch("/v1/functions/strict", json=patch)
        assert response.status_code == 400, response.text
        ErrorBody.model_validate(response.json())

    async def test_a_null_table_body_is_refused(self, frazil):
        """An empty body sets the default ACL; a JSON null is not an object and is a 400."""
        response = await frazil.documented.put("/v1/tables/notes", content=b"null")
        assert response.status_code == 400 and "null" in response.json()["message"]
        assert (await frazil.documented.put("/v1/tables/notes", content=b"")).status_code == 200

    async def test_answers_are_checked_against_their_models(self, frazil):
        """The response model is applied: a listed function has exactly the documented fields."""
        await frazil.deploy("listed")
        body = (await frazil.documented.get("/v1/functions")).json()
        assert set(body) == {"success", "functions", "next_cursor"}
        assert body["functions"][0]["name"] == "listed"
