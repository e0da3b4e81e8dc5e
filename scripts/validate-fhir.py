"""Validates FHIR R4 (4.0.1) resources with the fhir.resources models.

usage: validate-fhir.py RESOURCES.json

RESOURCES.json holds a list of resources. Prints one line per resource; exits 1 if any does
not validate (unknown or missing required elements, wrong types or codes).
"""

import json
import sys

import fhir.resources
from fhir.resources import construct_fhir_element

assert fhir.resources.__fhir_version__ == "4.0.1", fhir.resources.__fhir_version__


def main():
    resources = json.load(open(sys.argv[1]))
    failed = 0
    for resource in resources:
        kind = resource.get("resourceType", "?")
        try:
            construct_fhir_element(kind, resource)
            print(f"ok   {kind} {resource.get('id', '')}")
        except Exception as err:  # pydantic's ValidationError, or an unknown type
            failed += 1
            print(f"FAIL {kind}: {str(err).splitlines()[0]} ({len(str(err).splitlines())} lines)")
            print(str(err))
    sys.exit(1 if failed or not resources else 0)


if __name__ == "__main__":
    main()
