"""moto's S3 server on loopback, counting the requests it receives by operation.

    python bench/_moto_counting.py PORT

``GET /_bench/s3stats`` answers ``{"ListObjectsV2": N, "HeadObject": N, ...}`` (counts
since the last ``POST /_bench/s3reset``). Prints its base URL once it listens.
"""

from __future__ import annotations

import json
import sys
import threading
from collections import Counter

from moto.server import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import make_server


def operation(environ: dict) -> str:
    method = environ["REQUEST_METHOD"]
    query = environ.get("QUERY_STRING", "")
    path = environ.get("PATH_INFO", "/").strip("/")
    is_object = "/" in path  # path-style: bucket/key
    if method == "GET" and not is_object:
        return "ListObjectsV2" if "list-type=2" in query else "ListObjects/GetBucket"
    if method == "HEAD":
        return "HeadObject" if is_object else "HeadBucket"
    if method == "GET":
        return "GetObject"
    if method == "PUT":
        return "PutObject/UploadPart" if is_object else "CreateBucket"
    return f"{method} {'object' if is_object else 'bucket'}"


def main() -> None:
    port = int(sys.argv[1])
    app = DomainDispatcherApplication(create_backend_app)
    counts: Counter[str] = Counter()
    lock = threading.Lock()

    def counting(environ, start_response):  # type: ignore[no-untyped-def]
        path = environ.get("PATH_INFO", "")
        if path == "/_bench/s3stats":
            with lock:
                body = json.dumps(dict(counts)).encode()
            start_response("200 OK", [("Content-Type", "application/json")])
            return [body]
        if path == "/_bench/s3reset":
            with lock:
                counts.clear()
            start_response("200 OK", [("Content-Type", "application/json")])
            return [b"{}"]
        with lock:
            counts[operation(environ)] += 1
        return app(environ, start_response)

    server = make_server("127.0.0.1", port, counting, threaded=True)
    print(f"http://127.0.0.1:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
