"""A client instrumented by the SkyWalking Python agent: calls the backend twice.

Usage: sw_frontend.py COLLECTOR PROTOCOL SERVICE BACKEND_PORT
Makes a Local span `client-work` with two urllib Exit spans under it: GET /hello?x=1 (200)
and GET /fail (500). The agent reports the segment when the process exits (atexit flush).
"""
import sys
import urllib.error
import urllib.request

from skywalking import agent, config

collector, protocol, service, port = sys.argv[1:5]
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

from skywalking.decorators import trace  # noqa: E402


@trace(op="client-work")
def work():
    ok = urllib.request.urlopen(f"http://127.0.0.1:{port}/hello?x=1", timeout=10).read()
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/fail", timeout=10).read()
        failed = False
    except urllib.error.HTTPError as e:
        failed = e.code == 500
    return ok, failed


ok, failed = work()
print(ok.decode(), "fail-seen" if failed else "fail-missing", flush=True)
