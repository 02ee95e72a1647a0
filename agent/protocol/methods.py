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
REMOVE = "job.remove"
PRUNE = "job.prune"
ARTIFACTS = "job.artifacts"
SCHEDULE_ADD = "schedule.add"
SCHEDULE_LIST = "schedule.list"
SCHEDULE_REMOVE = "schedule.remove"
SCHEDULE_TRIGGER = "schedule.trigger"

#: Notification carrying one output line: {"id", "stream", "line", "time", "cursor"}.
LOG_LINE = "job.log"
#: Notification carrying one job event: {"id", "job_id", "name", "time", "kind", "state", "detail"}.
EVENT = "event"

METHODS = (
    PING,
    INFO,
    SUBMIT,
    GET,
    LIST,
    CANCEL,
    WAIT,
    LOGS,
    SUBSCRIBE,
    REMOVE,
    PRUNE,
    ARTIFACTS,
    SCHEDULE_ADD,
    SCHEDULE_LIST,
    SCHEDULE_REMOVE,
    SCHEDULE_TRIGGER,
)
