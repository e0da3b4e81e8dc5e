"""Checks captured HTTP requests against an OpenAPI 3.0 description.

usage: validate-openapi-requests.py SPEC.yaml REQUESTS.json

REQUESTS.json is a list of {method, path, query, content_type, body}; `path` is relative to
the spec's server URL. Each request must match a documented path and method, carry every
required parameter, and (for a documented JSON body) send that content type with a body the
schema accepts, with no property the schema does not define. Prints one line per request;
exits 1 if any does not validate.
"""

import json
import re
import sys
from urllib.parse import parse_qs

import yaml
from openapi_schema_validator import OAS30Validator


def deref(spec, node):
    """Resolves local $refs recursively."""
    if isinstance(node, dict):
        if "$ref" in node:
            target = spec
            for part in node["$ref"].lstrip("#/").split("/"):
                target = target[part]
            return deref(spec, target)
        return {k: deref(spec, v) for k, v in node.items()}
    if isinstance(node, list):
        return [deref(spec, v) for v in node]
    return node


def template_regex(template):
    names = re.findall(r"\{([^}]+)\}", template)
    pattern = re.escape(template)
    for name in names:
        pattern = pattern.replace(re.escape("{" + name + "}"), r"(?P<%s>[^/]+)" % name)
    return re.compile("^" + pattern + "$")


def check(spec, request):
    method = request["method"].lower()
    for template, item in spec["paths"].items():
        match = template_regex(template).match(request["path"])
        if not match or method not in item:
            continue
        operation = deref(spec, item[method])
        query = parse_qs(request.get("query") or "")
        for parameter in operation.get("parameters", []):
            where, name = parameter["in"], parameter["name"]
            present = (where == "path" and match.groupdict().get(name)) or (
                where == "query" and name in query
            )
            if parameter.get("required") and not present:
                return f"missing required {where} parameter {name}"
        body_spec = operation.get("requestBody")
        if body_spec:
            content = body_spec.get("content", {})
            ctype = (request.get("content_type") or "").split(";")[0].strip()
            if ctype not in content:
                return f"content type {ctype!r} is not one of {list(content)}"
            schema = dict(content[ctype]["schema"])
            if schema.get("type") == "object" and "properties" in schema:
                schema["additionalProperties"] = False
            if request.get("body") is None and body_spec.get("required"):
                return "a required body is missing"
            errors = sorted(OAS30Validator(schema).iter_errors(request.get("body")), key=str)
            if errors:
                return "body: " + errors[0].message
        elif request.get("body") is not None:
            return "a body was sent to an operation that takes none"
        return None
    return f"{request['method']} {request['path']} is not in the description"


def main():
    spec = yaml.safe_load(open(sys.argv[1]))
    requests = json.load(open(sys.argv[2]))
    failed = 0
    for request in requests:
        problem = check(spec, request)
        print(("FAIL " if problem else "ok   ") + f"{request['method']} {request['path']}" + (f": {problem}" if problem else ""))
        failed += bool(problem)
    sys.exit(1 if failed or not requests else 0)


if __name__ == "__main__":
    main()
