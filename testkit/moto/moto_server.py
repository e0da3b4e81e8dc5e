"""moto_server for MMT's tests: moto as installed, with one S3 answer put right, served on a
port the operating system picks, and with SQS time that a test can move.

* ListParts. moto 5.2.5 writes every S3 answer of its generic serializer under a root element
  named `<Operation>Response`. For ListParts, S3 answers `<ListPartsResult>` (Amazon S3 API
  Reference, ListParts, "Response Syntax"; the `locationName` of ListPartsOutput in the S3 API
  model), and the AWS SDK for Rust refuses any other root ("expected ListPartsResult").
  botocore does not check the root, which is why moto's own tests do not see it. This renames
  that one element before the answer leaves.
* The port. The server binds port 0 and prints the port it got as its first line on standard
  output, so two servers can never race for one port.
* SQS time. moto's SQS model tells time with `unix_time()` and `unix_time_millis()`. When
  MMT_MOTO_CLOCK_FILE names a file, the seconds written in it are added to that time: a test
  moves SQS's clock past a visibility timeout or a delay instead of sleeping through it.
"""

import os
import sys

from moto.core import serialize

_RENAMED = {"ListParts": ("ListPartsResponse", "ListPartsResult")}
_original = serialize.S3Serializer._serialized_result_to_response


def _with_s3_root(self, resp, result, shape, serialized_result):
    resp = _original(self, resp, result, shape, serialized_result)
    names = _RENAMED.get(self.operation_model.name)
    if names:
        wrong, right = names
        body = resp["body"]
        if isinstance(body, bytes):
            body = body.replace(wrong.encode(), right.encode())
        else:
            body = body.replace(wrong, right)
        resp["body"] = body
    return resp


serialize.S3Serializer._serialized_result_to_response = _with_s3_root

_CLOCK_FILE = os.environ.get("MMT_MOTO_CLOCK_FILE")


def _offset_seconds():
    if not _CLOCK_FILE:
        return 0.0
    try:
        with open(_CLOCK_FILE) as f:
            return float(f.read().strip() or 0)
    except (OSError, ValueError):
        return 0.0


def _move_sqs_clock():
    from moto.sqs import models

    unix_time, unix_time_millis = models.unix_time, models.unix_time_millis
    # Only "now" moves; converting a given datetime stays exact.
    models.unix_time = lambda dt=None: unix_time(dt) + (0.0 if dt else _offset_seconds())
    models.unix_time_millis = lambda dt=None: unix_time_millis(dt) + (
        0.0 if dt else _offset_seconds() * 1000.0
    )


def main():
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    host = sys.argv[sys.argv.index("-H") + 1] if "-H" in sys.argv else "127.0.0.1"
    _move_sqs_clock()
    app = DomainDispatcherApplication(create_backend_app)
    server = make_server(host, 0, app, threaded=True, request_handler=MotoRequestHandler)
    os.environ["MOTO_PORT"] = str(server.server_port)
    print(server.server_port, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
