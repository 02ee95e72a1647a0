"""The choices of ``job.export``, shared by the agent (agent/export/) and chooctl.

Constants only: what each target makes is agent/export/'s to say.
"""

#: The engines a job or schedule can be exported to.
TARGETS = ("kubernetes", "nomad")
KUBERNETES, NOMAD = TARGETS
#: What a Kubernetes export makes: the Job (a CronJob for a schedule), or the bare Pod.
KINDS = ("job", "pod")
DEFAULT_KIND = KINDS[0]
#: The Kubernetes version the manifests are written for (and validated against in the tests).
KUBERNETES_VERSION = "1.33"
