"""``python -m agent`` runs the agent (same as the ``choo-agent`` script)."""

from agent.entry import main

main()
