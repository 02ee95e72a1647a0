"""The wire protocol, defined once for server (rpc.py) and client (client.py).

One JSON-RPC 2.0 text per line, each way. Streaming calls (``job.logs`` with
``follow``) send notifications named below on the same connection before
their response. Error codes live in errors.py.
"""

PING = "agent.ping"
INFO = "agent.info"
SUBMIT = "job.submit"
GET = "job.get"
LIST = "job.list"
CANCEL = "job.cancel"
WAIT = "job.wait"
LOGS = "job.logs"
SUBSCRIBE = "events.subscribe"

#: Notification carrying one output line: {"id", "stream", "line", "time", "cursor"}.
LOG_LINE = "job.log"
#: Notification carrying one job event: {"id", "job_id", "name", "time", "kind", "state", "detail"}.
EVENT = "event"

METHODS = (PING, INFO, SUBMIT, GET, LIST, CANCEL, WAIT, LOGS, SUBSCRIBE)
