# The two commands: `make run` (set up + the default quick grid) and `make test`.
# Both are idempotent: the venv and the install are redone only when pyproject.toml changes.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: run test bench leaderboard setup data clean

setup: $(STAMP) data

$(PY):
	python3 -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[test,text]'
	touch $(STAMP)

# Offline data: Debian packages when we are root with apt; otherwise say what to do.
data:
	@if [ -d /usr/share/datasets/fashion-mnist ] && [ -f /usr/share/wordnet/data.noun ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist wordnet-base >/dev/null; \
	else \
		echo "note: offline data missing; run 'sudo apt-get install dataset-fashion-mnist wordnet-base'" \
		     "or point KDBENCH_DATA / KDBENCH_WORDNET at the files (see README)"; \
	fi

run: setup
	$(VENV)/bin/kdbench run

# pytest's exit code 5 ("no tests collected") is a failure here, not a pass.
test: setup
	$(PY) -m pytest -q $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 1; fi; exit $$rc

# The committed leaderboard (resumable: every command skips cells that have a record):
# 1. every built-in method × compatible pair × 3 seeds at the standard profile;
# 2. student-only at half of each standard budget (the B vs B/2 convergence check);
# 3. the label-scarce and noisy-label scenarios on the two cheap vision pairs;
# 4. the vision pairs time-matched: every method gets student-only's seconds from step 1;
# 5. Hinton et al.'s protocol: mlp-hinton at the paper's 30,000 student steps, T = 4 and T = 20.
GRID := --seeds 3 --jobs 2 --threads 1 --quiet --out results
STANDARD := --profile standard $(GRID)
KDBENCH := $(VENV)/bin/kdbench
leaderboard: setup
	-$(KDBENCH) run $(STANDARD)
	-$(KDBENCH) run $(STANDARD) --methods student-only --budget-scale 0.5
	-$(KDBENCH) run $(STANDARD) --pairs mlp-hinton,resnet-cnn --methods student-only,hinton \
		--scenario labels-3 --scenario noise-40
	-$(KDBENCH) run $(STANDARD) --pairs resnet-cnn,vit-cnn --budget-mode time --match-seconds student-only
	-$(KDBENCH) run --profile paper $(GRID) --pairs mlp-hinton --methods student-only,hinton
	-$(KDBENCH) run --profile paper $(GRID) --pairs mlp-hinton --methods hinton --set hinton.temperature=20
	$(KDBENCH) report results --output leaderboard.md --plots results/plots --title "kdbench leaderboard"

bench: setup
	$(PY) -m pytest bench -q --benchmark-only --benchmark-autosave $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) runs .pytest_cache .benchmarks
