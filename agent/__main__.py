"""``python -m agent`` and the ``choo-agent`` script: the agent, started with the
garbage collector off.

Loading the agent's modules creates a few hundred thousand objects, and the
collector's passes over them were a fifth of the CPU time of a start. Nothing
made during the start is garbage worth collecting, so the collector is off
until the agent is ready; agent/daemon.py then freezes what exists (it lives
as long as the agent) and turns the collector back on.
"""

import gc


def main() -> None:
    """Run ``choo-agent`` (agent/entry.py), loading it with the collector off."""
    gc.disable()
    from agent.entry import main as run  # noqa: PLC0415 (the point is to import it here)

    run()


if __name__ == "__main__":
    main()
