"""The allowed values and defaults of a schedule's settings, shared by agent and chooctl.

Constants only: the checks that use them are agent/rules/schedule.py's, the
options that offer them chooctl's (agent/cli/schedules.py).
"""

#: What a schedule does when a run is due while an earlier one has not ended:
#: start another (allow), skip this one (forbid), cancel the old ones (replace).
POLICIES = ("allow", "forbid", "replace")
DEFAULT_POLICY = "allow"
#: Finished runs of a schedule kept (older ones are removed), by default and at most.
DEFAULT_HISTORY = 10
MAX_HISTORY = 1000
