"""Checks what the Lambda functions wrote to their log, as CloudWatch will read it.

usage: check-lambda-log.py LOG

* Every JSON object with an `_aws` member must be valid Embedded Metric Format: a Timestamp in
  milliseconds, one or more directives with a Namespace, dimension sets whose names are string
  members of the object, and metrics (Name, Unit) whose values are numbers.
* Every log line an invocation wrote ("request completed", a job's lines) names the function
  and carries the invocation's AWS request id.

Prints the counts; exits 1 on the first invalid line, or when either kind is missing.
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


INVOCATION_MESSAGES = {"request completed", "transcription completed", "retention sweep finished"}


def check_log_line(value):
    assert isinstance(value.get("function"), str) and value["function"], "no function name"
    assert isinstance(value.get("aws_request_id"), str) and value["aws_request_id"], "no AWS request id"
    for key in ("level", "target", "timestamp"):
        assert key in value, key


def main():
    lines = []
    invocation_lines = 0
    for raw in open(sys.argv[1], errors="replace"):
        start = raw.find("{")
        if start < 0:
            continue
        if '"_aws"' in raw:
            lines.append(raw[start:].strip())
            continue
        try:
            value = json.loads(raw[start:])
        except ValueError:
            continue
        if value.get("message") in INVOCATION_MESSAGES:
            try:
                check_log_line(value)
            except AssertionError as err:
                print(f"log line without {err}: {raw[start:start + 300]}")
                sys.exit(1)
            invocation_lines += 1
    routes = queues = 0
    for line in lines:
        try:
            value = check(line)
        except (AssertionError, KeyError, ValueError) as err:
            print(f"invalid EMF line ({err}): {line[:200]}")
            sys.exit(1)
        routes += "Route" in value
        queues += "Queue" in value
    print(
        f"EMF: {len(lines)} lines valid ({routes} per request, {queues} per queue batch); "
        f"{invocation_lines} log lines name their function and AWS request id"
    )
    sys.exit(0 if routes and queues and invocation_lines else 1)


if __name__ == "__main__":
    main()
