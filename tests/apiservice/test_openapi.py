"""The OpenAPI documents: valid Swagger 2.0 and OpenAPI 3.0, every reference resolved, the
server's real answers valid against them, and served as kube-apiserver's aggregator fetches
them (no credentials, `Accept: application/json` or none, If-None-Match)."""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import OpenAPIV2SpecValidator, OpenAPIV30SpecValidator

from apiservice import openapi
from apiservice.server import Server
from tests.harness import Answer, Client
from tests.pki import PKI

BASE = "/apis/external.metrics.k8s.io/v1beta1"
METRIC = f"{BASE}/namespaces/{{namespace}}/{{metric}}"
MASTERS = {"X-Remote-User": "system:kube-aggregator", "X-Remote-Group": "system:masters"}
GROUP_PATH = "/openapi/v3/apis/external.metrics.k8s.io/v1beta1"


@pytest.fixture
def anonymous(server: Server, pki: PKI) -> Iterator[Client]:
    """A client with no credentials at all, as the tests of the aggregator's fetch."""
    with Client(server.port, pki.path("serving-ca")) as client:
        yield client


@pytest.fixture
def aggregator(server: Server, pki: PKI) -> Iterator[Client]:
    with Client(server.port, pki.path("serving-ca"), pki.front_proxy) as client:
        yield client


def refs(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "$ref":
                yield item
            else:
                yield from refs(item)
    elif isinstance(value, list):
        for item in value:
            yield from refs(item)


def resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


# --- the documents themselves --------------------------------------------------------------


def test_v2_is_valid_swagger_2() -> None:
    errors = list(OpenAPIV2SpecValidator(openapi.SWAGGER).iter_errors())
    assert errors == []


def test_v3_is_valid_openapi_3_0() -> None:
    errors = list(OpenAPIV30SpecValidator(openapi.OPENAPI_V3).iter_errors())
    assert errors == []


def test_the_validator_is_not_blind() -> None:
    """The control for the two tests above: a v3-only parameter location is a v2 error."""
    broken = json.loads(json.dumps(openapi.SWAGGER))
    broken["paths"][METRIC]["parameters"][0]["in"] = "cookie"
    assert list(OpenAPIV2SpecValidator(broken).iter_errors())


@pytest.mark.parametrize(
    ("document", "prefix"),
    [(openapi.SWAGGER, "#/definitions/"), (openapi.OPENAPI_V3, "#/components/schemas/")],
    ids=["v2", "v3"],
)
def test_every_ref_resolves_and_every_schema_is_used(document: dict[str, Any], prefix: str) -> None:
    found = set(refs(document))
    for ref in found:
        assert ref.startswith(prefix), ref
        resolve(document, ref)
    names = {ref.removeprefix(prefix) for ref in found}
    defined = (
        document["definitions"] if "swagger" in document else document["components"]["schemas"]
    )
    assert names == set(defined)


@pytest.mark.parametrize("document", [openapi.SWAGGER, openapi.OPENAPI_V3], ids=["v2", "v3"])
def test_paths_are_the_served_gets_under_the_group_version(document: dict[str, Any]) -> None:
    assert set(document["paths"]) == {BASE, METRIC}
    for item in document["paths"].values():
        assert set(item) - {"parameters"} == {"get"}
    metric = document["paths"][METRIC]
    assert [(p["name"], p["in"], p.get("required")) for p in metric["parameters"]] == [
        ("namespace", "path", True),
        ("metric", "path", True),
    ]
    (selector,) = metric["get"]["parameters"]
    assert (selector["name"], selector["in"]) == ("labelSelector", "query")
    assert metric["get"]["x-kubernetes-action"] == "list"
    assert metric["get"]["x-kubernetes-group-version-kind"] == {
        "group": "external.metrics.k8s.io",
        "kind": "ExternalMetricValue",
        "version": "v1beta1",
    }


def test_definitions_use_the_kubernetes_names_and_kinds() -> None:
    definitions = openapi.SWAGGER["definitions"]
    assert set(definitions) == {
        "io.k8s.metrics.pkg.apis.external_metrics.v1beta1.ExternalMetricValueList",
        "io.k8s.metrics.pkg.apis.external_metrics.v1beta1.ExternalMetricValue",
        "io.k8s.apimachinery.pkg.api.resource.Quantity",
        "io.k8s.apimachinery.pkg.apis.meta.v1.Time",
        "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta",
        "io.k8s.apimachinery.pkg.apis.meta.v1.Status",
        "io.k8s.apimachinery.pkg.apis.meta.v1.StatusDetails",
        "io.k8s.apimachinery.pkg.apis.meta.v1.StatusCause",
        "io.k8s.apimachinery.pkg.apis.meta.v1.APIResourceList",
        "io.k8s.apimachinery.pkg.apis.meta.v1.APIResource",
    }
    kinds = {
        name: schema["x-kubernetes-group-version-kind"]
        for name, schema in definitions.items()
        if "x-kubernetes-group-version-kind" in schema
    }
    group = {"group": "external.metrics.k8s.io", "version": "v1beta1"}
    assert kinds == {
        openapi.VALUE_LIST: [{**group, "kind": "ExternalMetricValueList"}],
        openapi.VALUE: [{**group, "kind": "ExternalMetricValue"}],
        openapi.STATUS: [{"group": "", "version": "v1", "kind": "Status"}],
        openapi.RESOURCE_LIST: [{"group": "", "version": "v1", "kind": "APIResourceList"}],
    }
    assert definitions[openapi.QUANTITY]["type"] == "string"
    value = definitions[openapi.VALUE]
    assert value["required"] == ["metricName", "metricLabels", "timestamp", "value"]
    assert value["properties"]["window"]["format"] == "int64"


def test_v3_schemas_are_the_v2_definitions() -> None:
    schemas = openapi.OPENAPI_V3["components"]["schemas"]
    as_v2 = json.loads(json.dumps(schemas).replace("#/components/schemas/", "#/definitions/"))
    assert as_v2 == openapi.SWAGGER["definitions"]


def test_every_path_is_kept_by_the_aggregators_filters() -> None:
    """v1.20 keeps paths under /apis/; current versions under /apis/<group>/<version>/ (the
    resource list, served without the slash, is dropped there and stays in the v3 document)."""
    for path in openapi.SWAGGER["paths"]:
        assert path.startswith("/apis/")
    assert METRIC.startswith(BASE + "/")


# --- the server's answers against the documents --------------------------------------------


def problems(body: Any, name: str) -> list[str]:
    """What is wrong with `body` as an instance of the v3 document's schema `name`."""
    schema = {"$ref": f"#/components/schemas/{name}", **openapi.OPENAPI_V3}
    return [error.message for error in OAS30Validator(schema).iter_errors(body)]


def test_served_answers_match_the_schemas(aggregator: Client) -> None:
    listed = aggregator.get(BASE, MASTERS)
    assert listed.status == 200
    assert problems(listed.json(), openapi.RESOURCE_LIST) == []
    path = METRIC.format(namespace="shop", metric="predicted_replicas")
    values = aggregator.get(path + "?labelSelector=target%3Dweb", MASTERS)
    assert values.status == 200
    assert problems(values.json(), openapi.VALUE_LIST) == []
    missing = aggregator.get(METRIC.format(namespace="shop", metric="unknown"), MASTERS)
    assert missing.status == 404
    assert problems(missing.json(), openapi.STATUS) == []
    # The control: the schemas do reject a value without its required fields.
    assert problems({"items": [{"metricName": "x"}]}, openapi.VALUE_LIST)


# --- serving ---------------------------------------------------------------------------------


def assert_document(answer: Answer, document: openapi.Document) -> None:
    assert answer.status == 200, answer.body
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.body == document.body
    assert answer.headers["ETag"] == document.etag
    assert re.fullmatch(r'"[0-9A-F]{128}"', document.etag)
    assert answer.headers["Vary"] == "Accept"


EVERY_DOCUMENT = pytest.mark.parametrize(
    ("path", "document"),
    [
        ("/openapi/v2", openapi.V2),
        ("/openapi/v3", openapi.V3_DISCOVERY),
        (GROUP_PATH, openapi.V3_GROUP),
    ],
    ids=["v2", "v3", "v3-group"],
)


@EVERY_DOCUMENT
def test_documents_are_served_without_credentials(
    anonymous: Client, path: str, document: openapi.Document
) -> None:
    assert_document(anonymous.get(path), document)
    # The v2 downloader asks for JSON; the v3 one sends no Accept at all.
    assert_document(anonymous.get(path, {"Accept": "application/json"}), document)


def test_served_documents_are_the_module_constants(anonymous: Client) -> None:
    assert anonymous.get("/openapi/v2").json() == openapi.SWAGGER
    assert anonymous.get(GROUP_PATH).json() == openapi.OPENAPI_V3


def test_v3_discovery_points_at_the_group_document_by_its_etag(anonymous: Client) -> None:
    discovered = anonymous.get("/openapi/v3").json()
    assert list(discovered) == ["paths"]
    assert list(discovered["paths"]) == ["apis/external.metrics.k8s.io/v1beta1"]
    url = discovered["paths"]["apis/external.metrics.k8s.io/v1beta1"]["serverRelativeURL"]
    split = urllib.parse.urlsplit(url)
    assert split.path == GROUP_PATH
    (hash_,) = urllib.parse.parse_qs(split.query)["hash"]
    answer = anonymous.get(url)
    assert_document(answer, openapi.V3_GROUP)
    assert answer.headers["ETag"] == f'"{hash_}"'
    assert answer.headers["Cache-Control"] == "public, immutable"
    assert answer.headers["Expires"].endswith(" GMT")


def test_a_stale_hash_is_redirected_to_the_current_url(anonymous: Client) -> None:
    answer = anonymous.get(f"{GROUP_PATH}?hash=0123")
    assert answer.status == 301
    assert answer.headers["Location"] == openapi.V3_GROUP_URL
    assert "Cache-Control" not in answer.headers


@EVERY_DOCUMENT
def test_if_none_match_is_a_304(anonymous: Client, path: str, document: openapi.Document) -> None:
    for header in (document.etag, f"W/{document.etag}", f'"other", {document.etag}', "*"):
        answer = anonymous.get(path, {"If-None-Match": header, "Accept": "application/json"})
        assert (answer.status, answer.body) == (304, b""), header
        assert answer.headers["ETag"] == document.etag
    assert anonymous.get(path, {"If-None-Match": '"other"'}).status == 200


@pytest.mark.parametrize("path", ["/openapi/v2", "/openapi/v3", GROUP_PATH])
@pytest.mark.parametrize(
    "accept",
    [
        "application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
        "application/com.github.proto-openapi.spec.v3.v1.0+protobuf",
        "application/vnd.kubernetes.protobuf",
        "application/json;q=0, application/vnd.kubernetes.protobuf",
    ],
)
def test_protobuf_only_is_406(anonymous: Client, path: str, accept: str) -> None:
    answer = anonymous.get(path, {"Accept": accept})
    assert answer.status == 406
    assert answer.json()["reason"] == "NotAcceptable"


@pytest.mark.parametrize(
    "accept",
    [
        "application/com.github.proto-openapi.spec.v3.v1.0+protobuf, application/json",
        "application/com.github.proto-openapi.spec.v2@v1.0+protobuf;q=1, */*;q=0.5",
    ],
)
def test_json_among_other_types_is_json(anonymous: Client, accept: str) -> None:
    assert_document(anonymous.get("/openapi/v2", {"Accept": accept}), openapi.V2)


@pytest.mark.parametrize(
    "path",
    [
        "/openapi/v3/apis",
        "/openapi/v3/",
        f"{GROUP_PATH}/",
        "/openapi/v3/api/v1",
        "/openapi/v3/apis/custom.metrics.k8s.io/v1beta2",
    ],
)
def test_other_openapi_paths_are_a_404_status(anonymous: Client, path: str) -> None:
    answer = anonymous.get(path)
    assert answer.status == 404
    body = answer.json()
    assert (body["kind"], body["reason"], body["code"]) == ("Status", "NotFound", 404)


def test_credentials_are_not_needed_and_not_harmful(aggregator: Client) -> None:
    assert_document(aggregator.get("/openapi/v2", MASTERS), openapi.V2)
    assert_document(aggregator.get("/openapi/v2", {"Authorization": "Bearer junk"}), openapi.V2)
