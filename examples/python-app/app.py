import os
from wsgiref.simple_server import make_server


def app(environ, start_response):
    body = f"Hello from Python on {os.environ.get('DYNO')}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


make_server("0.0.0.0", int(os.environ["PORT"]), app).serve_forever()
