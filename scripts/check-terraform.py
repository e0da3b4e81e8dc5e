#!/usr/bin/env python3
"""Offline checks of infra/ that `terraform validate` would do with providers at hand.

1. References: every `var.*`, `local.*`, `module.<name>.<output>`, `data.<type>.<name>` and
   resource address used in a module is declared in that module (or, for module outputs, in
   the called module); every module call passes only arguments the callee declares as
   variables and every variable the callee requires.
2. Provider schema: every resource and data source type exists in hashicorp/aws, every argument
   and nested block is one the provider's schema has, and every `<type>.<name>.<attribute>`
   read is an argument or exported attribute of that type. The schema comes from the npm package
   @cdktf/provider-aws (generated from hashicorp/aws; the version is in its package.json), which
   `scripts/setup.sh` unpacks: its generated bindings name every argument in snake_case in
   `synthesizeAttributes` and the nested blocks' `*ToTerraform` converters, and every exported
   attribute in `get*Attribute('<name>')`.

    check-terraform.py --schema-package DIR [--infra infra]   check, exit 1 on a finding
    check-terraform.py --schema-package DIR --self-test       plant mistakes, expect findings
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
from pathlib import Path

import hcl2

META_ARGUMENTS = {"count", "for_each", "depends_on", "provider", "lifecycle", "provisioner", "connection"}
MODULE_META = {"source", "version", "providers", "count", "for_each", "depends_on"}
BUILTIN_ROOTS = {"each", "count", "self", "path", "terraform"}


# ---------------------------------------------------------------- provider schema

FIELD = re.compile(r"^\s{8,}([a-z0-9_]+): (.*?),?$", re.M)
CONVERTER = re.compile(r"(?<!cdktf\.)\b([a-z]\w*ToTerraform)\b")


def _object_keys(body: str) -> dict[str, str | None]:
    """`key: value` lines of a generated `return {...}` → key → nested converter (if any)."""
    keys = {}
    for name, value in FIELD.findall(body):
        nested = CONVERTER.search(value)
        keys[name] = nested.group(1) if nested else None
    return keys


def load_schema(package: Path) -> dict:
    version = json.loads((package / "package.json").read_text())["cdktf"]["provider"]["version"]
    schema = {"provider_version": version, "resource": {}, "data": {}}
    for index in sorted((package / "lib").glob("*/index.js")):
        text = index.read_text()
        found = re.search(r"^(\w+)\.tfResourceType = \"(\w+)\";", text, re.M)
        if not found:
            continue
        cls, tf_type = found.groups()
        converters = {}
        for m in re.finditer(r"^function (\w+ToTerraform)\(struct\) \{", text, re.M):
            body_start = m.end()
            end = text.index("\n}\n", body_start)
            body = text[body_start:end]
            ret = body.rfind("return {")
            converters[m.group(1)] = _object_keys(body[ret:]) if ret >= 0 else {}
        cls_start = text.index(f"class {cls} extends")
        cls_end = text.index(f"exports.{cls} = {cls};", cls_start)
        cls_text = text[cls_start:cls_end]
        synth = cls_text.index("synthesizeAttributes() {")
        top = _object_keys(cls_text[synth:cls_text.index("\n    }\n", synth)])

        def expand(keys: dict[str, str | None], depth: int = 0) -> dict:
            return {
                name: (expand(converters.get(conv, {}), depth + 1) if conv and depth < 12 else None)
                for name, conv in keys.items()
            }

        exported = set(re.findall(r"(?:get\w*Attribute|interpolationForAttribute)\('([a-z0-9_]+)'\)", cls_text))
        kind = "data" if index.parent.name.startswith("data-") else "resource"
        schema[kind][tf_type] = {"arguments": expand(top), "attributes": sorted(exported | set(top))}
    return schema


def schema_for(package: Path, cache: Path | None) -> dict:
    if cache and cache.exists():
        return json.loads(cache.read_text())
    schema = load_schema(package)
    if cache:
        cache.write_text(json.dumps(schema))
    return schema


# ---------------------------------------------------------------- HCL model

def unquote(label: str) -> str:
    return label[1:-1] if label.startswith('"') and label.endswith('"') else label


class Module:
    def __init__(self, directory: Path):
        self.directory = directory
        self.files: dict[Path, dict] = {}
        for tf in sorted(directory.glob("*.tf")):
            with tf.open() as handle:
                self.files[tf] = hcl2.load(handle)

    def blocks(self, kind: str):
        """(file, labels..., body) for each top-level block of a kind."""
        for path, doc in self.files.items():
            for entry in doc.get(kind, []):
                yield path, entry

    def variables(self) -> dict[str, dict]:
        return {unquote(k): v for _, e in self.blocks("variable") for k, v in e.items()}

    def outputs(self) -> set[str]:
        return {unquote(k) for _, e in self.blocks("output") for k in e}

    def locals(self) -> set[str]:
        return {k for _, e in self.blocks("locals") for k in e if not k.startswith("__")}

    def modules(self) -> dict[str, dict]:
        return {unquote(k): v for _, e in self.blocks("module") for k, v in e.items()}

    def addresses(self, kind: str) -> set[tuple[str, str]]:
        return {(unquote(t), unquote(n)) for _, e in self.blocks(kind) for t, named in e.items() for n in named}


def strings(value, skip_keys=False):
    """Every expression string in a parsed structure (keys too, for `{ (local.x) = ... }`)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            if key.startswith("__"):
                continue
            if not skip_keys and "${" in key:
                yield key
            yield from strings(item)


REFERENCE = re.compile(r"(?<![\w.\-\"])(var|local|module|data)\.([A-Za-z_][\w-]*)(?:\.([A-Za-z_][\w-]*))?(?:\.([A-Za-z_][\w-]*))?")


def resource_reference(prefixes: list[str]) -> re.Pattern:
    alternatives = "|".join(map(re.escape, prefixes))
    return re.compile(rf"(?<![\w.\-\"/:])((?:{alternatives})_[a-z0-9_]+)\.([A-Za-z_][\w-]*)(?:\.([A-Za-z_][\w-]*))?")


# ---------------------------------------------------------------- checks

class Findings(list):
    def add(self, path: Path, message: str):
        self.append(f"{path}: {message}")


def check_references(root: Path, modules: dict[Path, Module], schema: dict, findings: Findings):
    resource_ref = resource_reference(["aws", "random", "null", "archive", "tls", "time"])
    for directory, module in modules.items():
        variables, local_names = module.variables(), module.locals()
        calls, resources, data = module.modules(), module.addresses("resource"), module.addresses("data")
        for path, doc in module.files.items():
            for text in strings({k: v for k, v in doc.items() if k != "variable"}):
                if "${" not in text:
                    continue
                for root_name, name, second, third in REFERENCE.findall(text):
                    if root_name == "var" and name not in variables:
                        findings.add(path, f"var.{name} is not declared in {directory.name}")
                    elif root_name == "local" and name not in local_names:
                        findings.add(path, f"local.{name} is not declared in {directory.name}")
                    elif root_name == "module":
                        if name not in calls:
                            findings.add(path, f"module.{name} is not called in {directory.name}")
                        elif second:
                            callee = (directory / unquote(calls[name]["source"])).resolve()
                            if callee in modules and second not in modules[callee].outputs():
                                findings.add(path, f"module.{name}.{second}: {callee.name} has no output {second}")
                    elif root_name == "data":
                        if not second or (name, second) not in data:
                            findings.add(path, f"data.{name}.{second} is not declared in {directory.name}")
                        elif third and name in schema["data"] and third not in schema["data"][name]["attributes"]:
                            findings.add(path, f"data.{name}.{second}.{third}: {name} has no attribute {third}")
                for tf_type, name, attribute in resource_ref.findall(text):
                    if (tf_type, name) not in resources:
                        findings.add(path, f"{tf_type}.{name} is not declared in {directory.name}")
                    elif attribute and tf_type in schema["resource"] and attribute not in schema["resource"][tf_type]["attributes"]:
                        findings.add(path, f"{tf_type}.{name}.{attribute}: {tf_type} has no attribute {attribute}")
        for path, entry in module.blocks("module"):
            for call_name, call in entry.items():
                source = unquote(call.get("source", ""))
                callee = (directory / source).resolve()
                if callee not in modules:
                    findings.add(path, f"module {unquote(call_name)}: source {source} is not a module of infra/")
                    continue
                declared = modules[callee].variables()
                passed = {k for k in call if not k.startswith("__")} - MODULE_META
                for argument in sorted(passed - set(declared)):
                    findings.add(path, f"module {unquote(call_name)}: {callee.name} has no variable {argument}")
                for required in sorted(v for v, spec in declared.items() if "default" not in spec):
                    if required not in passed:
                        findings.add(path, f"module {unquote(call_name)}: required variable {required} of {callee.name} is not passed")


def check_block(path: Path, where: str, body: dict, allowed: dict | None, findings: Findings):
    if allowed is None:  # an attribute holding an object: its keys are data, not schema
        return
    for key, value in body.items():
        if key.startswith("__"):
            continue
        if key == "dynamic":
            for entry in value:
                for label, spec in entry.items():
                    name = unquote(label)
                    if name not in allowed:
                        findings.add(path, f"{where}: no block {name}")
                        continue
                    for content in spec.get("content", []):
                        check_block(path, f"{where}.{name}", content, allowed[name], findings)
            continue
        if key not in allowed:
            findings.add(path, f"{where}: no argument {key}")
            continue
        if isinstance(value, list) and value and all(isinstance(v, dict) and v.get("__is_block__") for v in value):
            for block in value:
                check_block(path, f"{where}.{key}", block, allowed[key], findings)


def check_schema(modules: dict[Path, Module], schema: dict, findings: Findings):
    for module in modules.values():
        for kind in ("resource", "data"):
            for path, entry in module.blocks(kind):
                for tf_type, named in entry.items():
                    tf_type = unquote(tf_type)
                    if not tf_type.startswith("aws_"):
                        continue
                    if tf_type not in schema[kind]:
                        findings.add(path, f"{kind} type {tf_type} does not exist in hashicorp/aws {schema['provider_version']}")
                        continue
                    allowed = dict(schema[kind][tf_type]["arguments"])
                    for meta in META_ARGUMENTS:
                        allowed.setdefault(meta, None)
                    for name, body in named.items():
                        check_block(path, f"{tf_type}.{unquote(name)}", body, allowed, findings)


def run_checks(infra: Path, schema: dict) -> Findings:
    directories = sorted({tf.parent.resolve() for tf in infra.rglob("*.tf") if ".terraform" not in tf.parts})
    modules = {d: Module(d) for d in directories}
    findings = Findings()
    check_references(infra, modules, schema, findings)
    check_schema(modules, schema, findings)
    return findings


# ---------------------------------------------------------------- self-test

PLANTED = [
    ("an undeclared local", "modules/mmt/main.tf", "local.bucket_arn", "local.bucket_arnn", "local.bucket_arnn is not declared"),
    ("a wrong module argument", "modules/mmt/main.tf", r'(source\s*=\s*"\.\./storage")', r'\1\n  bucket_nmae = "x"', "storage has no variable bucket_nmae"),
    ("a misspelled resource argument", "modules/storage/main.tf", "force_destroy", "force_destory", "no argument force_destory"),
    ("a nested block argument", "modules/storage/main.tf", "object_ownership", "object_owner", "no argument object_owner"),
    ("an unknown resource attribute", "modules/mmt/main.tf", "aws_kms_key.data.arn", "aws_kms_key.data.arm", "has no attribute arm"),
]


def self_test(infra: Path, schema: dict) -> int:
    failures = 0
    for what, file, old, new, expected in PLANTED:
        with tempfile.TemporaryDirectory() as tmp:
            copy = Path(tmp) / "infra"
            shutil.copytree(infra, copy, ignore=shutil.ignore_patterns(".terraform"))
            target = copy / file
            text = target.read_text()
            planted, count = re.subn(old if old.startswith("(") else re.escape(old), new, text, count=1)
            assert count == 1, f"self-test: {old!r} not in {file}"
            target.write_text(planted)
            found = [f for f in run_checks(copy, schema) if expected in f]
            print(f"{'ok  ' if found else 'FAIL'} planted {what} in {file}: {found[0] if found else 'not reported'}")
            failures += not found
    return failures


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--schema-package", type=Path, required=True)
    parser.add_argument("--schema-cache", type=Path)
    parser.add_argument("--infra", type=Path, default=Path("infra"))
    parser.add_argument("--self-test", action="store_true")
    args = parser.parse_args()
    schema = schema_for(args.schema_package, args.schema_cache)
    if args.self_test:
        failures = self_test(args.infra, schema)
        print(f"terraform checks self-test: {len(PLANTED) - failures} passed, {failures} failed")
        return 1 if failures else 0
    findings = run_checks(args.infra, schema)
    for finding in findings:
        print(finding)
    print(f"terraform references and hashicorp/aws {schema['provider_version']} schema: "
          f"{len(schema['resource'])} resource and {len(schema['data'])} data source types known, {len(findings)} findings")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
