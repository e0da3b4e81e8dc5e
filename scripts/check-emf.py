"""Checks the CloudWatch Embedded Metric Format lines in a log.

usage: check-emf.py LOG

Every JSON object in the log with an `_aws` member must be valid EMF: a Timestamp in milliseconds, one or
more directives with a Namespace, dimension sets whose names are string members of the object,
and metrics (Name, Unit) whose values are numbers. Prints how many lines carry route and queue
dimensions; exits 1 on the first invalid line or when there is none.
"""

import json
import sys

UNITS = {"Count", "Milliseconds", "Seconds", "Bytes", "None"}


def check(line):
    value = json.loads(line)
    aws = value["_aws"]
    assert isinstance(aws["Timestamp"], int) and aws["Timestamp"] > 1_600_000_000_000, "Timestamp"
    directives = aws["CloudWatchMetrics"]
    assert directives, "no directive"
    for directive in directives:
        assert isinstance(directive["Namespace"], str) and directive["Namespace"], "Namespace"
        for dimension_set in directive["Dimensions"]:
            for name in dimension_set:
                assert isinstance(value.get(name), str), f"dimension {name} missing"
        assert directive["Metrics"], "no metric"
        for metric in directive["Metrics"]:
            assert metric["Unit"] in UNITS, metric
            assert isinstance(value.get(metric["Name"]), (int, float)), f"metric {metric['Name']}"
    return value


def main():
    lines = []
    for raw in open(sys.argv[1], errors="replace"):
        start = raw.find("{")
        if start < 0 or '"_aws"' not in raw:
            continue
        lines.append(raw[start:].strip())
    routes = queues = 0
    for line in lines:
        try:
            value = check(line)
        except (AssertionError, KeyError, ValueError) as err:
            print(f"invalid EMF line ({err}): {line[:200]}")
            sys.exit(1)
        routes += "Route" in value
        queues += "Queue" in value
    print(f"EMF: {len(lines)} lines valid ({routes} per request, {queues} per queue batch)")
    sys.exit(0 if routes and queues else 1)


if __name__ == "__main__":
    main()
