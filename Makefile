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

.PHONY: run test lint bench venv clean install uninstall test-system

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
ifeq ($(PYTEST_ARGS),)
	@tests/system/run.sh
endif
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
	 $(HOST) as-user $(TEST_USER) bash -c "cd $$tree && .venv/bin/python tests/bench.py --image $(TEST_IMAGE) && .venv/bin/python tests/bench_client.py --image $(TEST_IMAGE)"
else
	@$(HOST) venv $(CURDIR)
	@$(HOST) image $$(id -un) $(TEST_IMAGE)
	@.venv/bin/python tests/bench.py --image $(TEST_IMAGE) && .venv/bin/python tests/bench_client.py --image $(TEST_IMAGE)
endif

clean:
	rm -rf .venv build *.egg-info

# make install [PREFIX=/usr/local] [DESTDIR=]: a private virtualenv with choo in
# it, the two commands, units, man pages and an example config. Run as root
# without DESTDIR, it also prepares the choo account (packaging/systemd/setup-account.sh).
PYTHON := /usr/bin/python3
BINDIR := $(PREFIX)/bin
LIBDIR := $(PREFIX)/lib/choo
MANDIR := $(PREFIX)/share/man
SYSD := packaging/systemd
ifeq ($(DESTDIR),)
UNITDIR := /etc/systemd/system
USERUNITDIR := /etc/systemd/user
SYSUSERSDIR := /etc/sysusers.d
TMPFILESDIR := /etc/tmpfiles.d
else
UNITDIR := /lib/systemd/system
USERUNITDIR := /lib/systemd/user
SYSUSERSDIR := /usr/lib/sysusers.d
TMPFILESDIR := /usr/lib/tmpfiles.d
endif
INSTALLED = $(BINDIR)/choo-agent $(BINDIR)/chooctl \
	$(UNITDIR)/choo-agent.service $(UNITDIR)/choo-agent.socket \
	$(USERUNITDIR)/choo-agent.service $(USERUNITDIR)/choo-agent.socket \
	$(SYSUSERSDIR)/choo.conf $(TMPFILESDIR)/choo.conf \
	/etc/choo/agent.toml.example

install:
	$(PYTHON) -m venv --clear $(DESTDIR)$(LIBDIR)/venv
	@# Built from a scratch copy: an in-tree build would leave a root-owned build/ here.
	tmp=$$(mktemp -d) && cp -r pyproject.toml README.md agent $$tmp/ && \
	  $(DESTDIR)$(LIBDIR)/venv/bin/pip install -q --no-warn-script-location $$tmp; \
	  status=$$?; rm -rf $$tmp; exit $$status
ifneq ($(DESTDIR),)
	@# A staged venv must name its final place in the scripts' #! lines.
	grep -rlI -- '$(DESTDIR)' $(DESTDIR)$(LIBDIR)/venv/bin $(DESTDIR)$(LIBDIR)/venv/pyvenv.cfg \
	  | xargs -r sed -i 's|$(DESTDIR)||g'
endif
	install -d $(DESTDIR)$(BINDIR)
	ln -sfn $(LIBDIR)/venv/bin/choo-agent $(DESTDIR)$(BINDIR)/choo-agent
	ln -sfn $(LIBDIR)/venv/bin/chooctl $(DESTDIR)$(BINDIR)/chooctl
	install -d $(DESTDIR)$(UNITDIR) $(DESTDIR)$(USERUNITDIR)
	sed 's|/usr/local/bin/|$(BINDIR)/|' $(SYSD)/choo-agent.service > $(DESTDIR)$(UNITDIR)/choo-agent.service
	install -m 0644 $(SYSD)/choo-agent.socket $(DESTDIR)$(UNITDIR)/
	sed 's|/usr/local/bin/|$(BINDIR)/|' $(SYSD)/user/choo-agent.service > $(DESTDIR)$(USERUNITDIR)/choo-agent.service
	install -m 0644 $(SYSD)/user/choo-agent.socket $(DESTDIR)$(USERUNITDIR)/
	install -D -m 0644 $(SYSD)/choo.sysusers $(DESTDIR)$(SYSUSERSDIR)/choo.conf
	install -D -m 0644 $(SYSD)/choo.tmpfiles $(DESTDIR)$(TMPFILESDIR)/choo.conf
	install -D -m 0644 packaging/choo-agent.toml.example $(DESTDIR)/etc/choo/agent.toml.example
	for page in $(wildcard man/*.[158]); do \
	  install -D -m 0644 $$page $(DESTDIR)$(MANDIR)/man$${page##*.}/$${page##*/}; done
ifeq ($(DESTDIR)$(ROOT),yes)
	$(SYSD)/setup-account.sh $(SYSUSERSDIR)/choo.conf $(TMPFILESDIR)/choo.conf
	@echo "choo: installed; start it with: systemctl enable --now choo-agent.socket"
endif

# Removes what install put in place; the choo account, its subuids, linger and
# /var/lib/choo (database, Podman storage) stay: remove them by hand if wanted.
uninstall:
ifeq ($(DESTDIR)$(ROOT),yes)
	-[ -d /run/systemd/system ] && systemctl disable --now choo-agent.socket choo-agent.service
endif
	rm -f $(addprefix $(DESTDIR),$(INSTALLED))
	rm -f $(addprefix $(DESTDIR)$(MANDIR)/,$(foreach p,$(wildcard man/*.[158]),man$(subst .,,$(suffix $(p)))/$(notdir $(p))))
	rm -rf $(DESTDIR)$(LIBDIR)
	-rmdir $(DESTDIR)/etc/choo 2>/dev/null
ifeq ($(DESTDIR)$(ROOT),yes)
	-[ -d /run/systemd/system ] && systemctl daemon-reload
	@echo "choo: removed; the choo account and /var/lib/choo are kept (userdel -r choo to drop them)"
endif

# The unit files under a real systemd, in a container (root only; see tests/system/run.sh).
test-system:
	@$(HOST) packages
	@tests/system/run.sh
