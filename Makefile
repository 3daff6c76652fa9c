# devbot: one venv, everything from PyPI (no apt, no colcon, no ROS install needed).
#   make setup   create .venv and install the pinned dependencies + the workspace packages
#   make run     the main job: the toroidal dot world model learning, exploring by curiosity,
#                headless, progress + saved report (DURATION=seconds, default 900;
#                RUN_ARGS='name:=value ...' for more, e.g. selector:=sequence for ALWAYS_MOVE)
#   make test    lint (ruff) and the test suite (unit + graph tests over real DDS)
#   make bench   the benchmarks (prints numbers; not part of the tests)

PYTHON  ?= python3
VENV    ?= .venv
PY      := $(VENV)/bin/python
PIP     := $(PY) -m pip
PACKAGES := src/devbot src/toroidal_sim src/action_selectors src/world_model_node src/jetbot_driver src/devbot_explorer
STAMP   := $(VENV)/.devbot-installed
# devbot_bringup is data only (launch/ and config/ to share/devbot_bringup): installed, not
# editable, since an editable install lays out no share/; an edit there re-installs it.
BRINGUP := src/devbot_bringup
BRINGUP_STAMP := $(VENV)/.devbot-bringup-installed
BRINGUP_FILES := $(BRINGUP)/setup.py $(BRINGUP)/package.xml launch config $(wildcard launch/*.launch.yaml config/*)

.PHONY: setup run test bench lock clean

setup: $(STAMP) $(BRINGUP_STAMP)

$(STAMP): requirements.lock.txt requirements-ros.lock.txt $(foreach p,$(PACKAGES),$(p)/setup.py)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -r requirements.lock.txt -r requirements-ros.lock.txt
	$(PIP) install --quiet --no-deps $(foreach p,$(PACKAGES),-e $(p))
	touch $(STAMP)

$(BRINGUP_STAMP): $(STAMP) $(BRINGUP_FILES)
	$(PIP) install --quiet --no-deps --force-reinstall ./$(BRINGUP)
	touch $(BRINGUP_STAMP)

DURATION ?= 900
RUN_ARGS ?=

run: setup
	$(VENV)/bin/devbot launch devbot_bringup toroidal_dot_world_model.launch.yaml duration:=$(DURATION) \
		selector:=uncertainty $(RUN_ARGS)

test: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest

bench: setup
	$(PY) bench/bench_loop.py

lock:
	$(PY) tools/freeze_lock.py requirements.txt > requirements.lock.txt
	$(PY) tools/freeze_lock.py requirements-ros.txt --without requirements.lock.txt \
		> requirements-ros.lock.txt

clean:
	rm -rf $(VENV)
