"""moto_server with one S3 answer put right, for MMT's tests.

moto 5.2.5 writes every S3 answer of its generic serializer under a root element named
`<Operation>Response`. For ListParts, S3 answers `<ListPartsResult>` (Amazon S3 API Reference,
ListParts, "Response Syntax"; the `locationName` of ListPartsOutput in the S3 API model), and
the AWS SDK for Rust refuses any other root ("expected ListPartsResult"). botocore does not
check the root, which is why moto's own tests do not see it. Everything else is moto as
installed; this only renames that one element before the answer leaves.
"""

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

if __name__ == "__main__":
    from moto.server import main

    sys.exit(main())
