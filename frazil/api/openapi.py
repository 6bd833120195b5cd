"""/openapi.json: FastAPI's document from the routes (their response models, `answers(...)`, the
bearer scheme), plus what routes cannot declare themselves:

- the deploy `config` part's schema, which is `DeployConfig`'s (so it follows the settings a
  deploy accepts), under components/schemas;
- only the answers a route gives: FastAPI adds a 422 with its own `HTTPValidationError` body
  to every route with parameters, whether or not they can fail, and frazil answers its own error
  body anyway (frazil.api.errors); a route whose parameters can fail declares 422 itself. A
  route answering anything (a function's HTTP endpoint) documents only its `default` answer.
"""
from __future__ import annotations

from fastapi import FastAPI

from frazil.deploy.config import DeployConfig

REF_TEMPLATE = "#/components/schemas/{model}"


def _only_declared(responses: dict) -> None:
    invalid = responses.get("422", {}).get("content", {}).get("application/json", {}).get("schema", {})
    if invalid.get("$ref", "").endswith("/HTTPValidationError"):
        del responses["422"]
    if "default" in responses:
        responses.pop("200", None)


def install_openapi(app: FastAPI) -> None:
    generate = app.openapi  # FastAPI's, which caches its result in app.openapi_schema

    def openapi() -> dict:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        config = DeployConfig.model_json_schema(ref_template=REF_TEMPLATE)
        components.update(config.pop("$defs", {}))
        config["description"] = ("The deploy settings, as JSON (a frazil.toml's keys); every one is optional. "
                                 "An unknown key is refused.")
        components["DeployConfig"] = config
        for name in ("HTTPValidationError", "ValidationError"):
            components.pop(name, None)
        for operations in schema["paths"].values():
            for operation in operations.values():
                _only_declared(operation["responses"])
        return schema

    app.openapi = openapi
