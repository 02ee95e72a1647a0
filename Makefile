# choo: the two commands of the README, plus the developer's targets.
#   make run    set up what is missing, then run choo-agent in the foreground
#   make test   set up what the tests need, then run the whole suite
SHELL := /bin/bash
HOST := packaging/dev/host.sh
ROOT := $(shell [ "$$(id -u)" -eq 0 ] && echo yes)
# As root, the agent (and so Podman) runs as this unprivileged user, never rootful.
RUN_USER := choo
TEST_USER := choo-test
DEMO_IMAGE := localhost/choo-demo
TEST_IMAGE := localhost/choo-test
PYTEST_ARGS ?=
PREFIX ?= /usr/local
DESTDIR ?=

.PHONY: run test lint bench venv clean

venv:
	@$(HOST) venv $(CURDIR)

run:
ifeq ($(ROOT),yes)
	@$(HOST) packages
	@$(HOST) journald
	@$(HOST) user $(RUN_USER)
	@$(HOST) venv $(CURDIR)
	@tree=$$($(HOST) tree $(RUN_USER)) && $(HOST) venv $$tree && \
	 $(HOST) image $(RUN_USER) $(DEMO_IMAGE) && \
	 install -d -m 0750 -o $(RUN_USER) -g choo /run/choo && \
	 echo "choo: agent runs as user $(RUN_USER); socket /run/choo/agent.sock (root and group choo)" && \
	 echo "choo: in another terminal: $(CURDIR)/.venv/bin/chooctl run $(DEMO_IMAGE) echo hello" && \
	 exec $(HOST) as-user $(RUN_USER) $$tree/.venv/bin/choo-agent --socket /run/choo/agent.sock
else
	@$(HOST) packages
	@$(HOST) journald
	@$(HOST) venv $(CURDIR)
	@$(HOST) image $$(id -un) $(DEMO_IMAGE)
	@echo "choo: in another terminal: $(CURDIR)/.venv/bin/chooctl run $(DEMO_IMAGE) echo hello"
	@exec .venv/bin/choo-agent
endif

test:
ifeq ($(ROOT),yes)
	@$(HOST) packages
	@$(HOST) journald
	@$(HOST) user $(TEST_USER)
	@$(HOST) venv $(CURDIR)
	@tree=$$($(HOST) tree $(TEST_USER)) && $(HOST) venv $$tree && \
	 $(HOST) image $(TEST_USER) $(TEST_IMAGE) && \
	 $(HOST) as-user $(TEST_USER) bash -c "cd $$tree && CHOO_TEST_IMAGE=$(TEST_IMAGE) .venv/bin/python -m pytest $(PYTEST_ARGS)"
else
	@$(HOST) packages
	@$(HOST) journald
	@$(HOST) venv $(CURDIR)
	@$(HOST) image $$(id -un) $(TEST_IMAGE)
	@CHOO_TEST_IMAGE=$(TEST_IMAGE) .venv/bin/python -m pytest $(PYTEST_ARGS)
endif

lint: venv
	.venv/bin/ruff check .
	.venv/bin/ruff format --check agent tests
	.venv/bin/lint-imports

bench:
ifeq ($(ROOT),yes)
	@$(MAKE) --no-print-directory test PYTEST_ARGS="-q tests/unit" >/dev/null
	@tree=$$($(HOST) tree $(TEST_USER)) && \
	 $(HOST) as-user $(TEST_USER) bash -c "cd $$tree && .venv/bin/python tests/bench.py --image $(TEST_IMAGE)"
else
	@$(HOST) venv $(CURDIR)
	@$(HOST) image $$(id -un) $(TEST_IMAGE)
	@.venv/bin/python tests/bench.py --image $(TEST_IMAGE)
endif

clean:
	rm -rf .venv build *.egg-info
