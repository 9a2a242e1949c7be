"""A tiny HTTP backend instrumented by the SkyWalking Python agent (apache-skywalking).

Usage: sw_backend.py COLLECTOR PROTOCOL SERVICE
  COLLECTOR  host:port of the collector (deepflow-server's HTTP port for `http`, its
             SkyWalking gRPC port for `grpc`)
  PROTOCOL   http or grpc
  SERVICE    SkyWalking service name
Prints the port it listens on, then serves GET requests (`/fail` answers 500) until killed.
The agent's http.server plugin makes an Entry span per request, with a cross-process
reference to the caller's Exit span (sw8 header).
"""
import sys

from skywalking import agent, config

collector, protocol, service = sys.argv[1:4]
config.init(
    agent_collector_backend_services=collector,
    agent_protocol=protocol,
    agent_name=service,
    agent_instance_name=service + "-1",
    agent_logging_level="ERROR",
    agent_meter_reporter_active=False,
    agent_profile_active=False,
    agent_log_reporter_active=False,
)
agent.start()

import http.server  # noqa: E402  (instrumented after agent.start)


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"fail" if self.path.startswith("/fail") else b"hello"
        self.send_response(500 if self.path.startswith("/fail") else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


srv = http.server.HTTPServer(("127.0.0.1", 0), Handler)
print(srv.server_address[1], flush=True)
srv.serve_forever()
