"""Parses Prometheus text exposition (stdin) with the official client's parser.

Prints {"<name>{label=value,...}": value, ...} as JSON; exits 1 (with the parser's error) if
the text does not parse.
"""

import json
import sys

from prometheus_client.parser import text_string_to_metric_families

samples = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    for sample in family.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
        samples[f"{sample.name}{{{labels}}}"] = sample.value
print(json.dumps(samples, sort_keys=True))
