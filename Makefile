# The verbs a person uses. `make demo` and `make test` are the two README commands; both run
# the same idempotent set-up first.
SHELL := /bin/bash
.DEFAULT_GOAL := help
# The tools `make setup` installs (PyPI and npm ones in environments of their own) come first on
# PATH for every target: moto_server, cargo-lambda, the Python with the OpenAI SDK, Node.js.
MMT_TOOLS_DIR ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/mmt-tools
export MMT_TOOLS_DIR
export PATH := $(MMT_TOOLS_DIR)/bin:$(MMT_TOOLS_DIR)/py/bin:$(PATH)

FUNCTIONS := health demo-status auth upload transcriptions docs transcribe retention-sweep ehr-push

.PHONY: help setup model build build-lambdas demo demo-check walkthrough test lint infra-check test-rust \
        fresh-check large-upload-check container-check lambda-smoke watch bench fuzz fuzz-smoke web-check deploy destroy smoke clean $(addprefix invoke-,$(FUNCTIONS))

help: ## List the targets
	@grep -E '^[a-z%-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

setup: ## Install what the project needs (apt packages, PyPI and npm tools, Node.js, Terraform); idempotent
	@scripts/setup.sh

build: setup ## Build every crate
	cargo build --workspace

model: setup ## Obtain and verify a Whisper model under models/ (MODEL=tiny.en | base), its q4_0 quantization and the Silero VAD model
	@scripts/model.sh >/dev/null && QUANT=q4_0 scripts/model.sh >/dev/null && MODEL=silero-vad scripts/model.sh >/dev/null

demo: setup ## Run MMT in one process on http://localhost:8080 (embedded defaults, local Whisper)
	@scripts/demo.sh

test: setup model lint infra-check test-rust lambda-smoke demo-check container-check web-check fuzz-smoke ## Everything CI runs: lint, Terraform checks, tests, Lambda fixtures, demo walk-through, the image's entrypoint, browser tests, 5 s of each fuzz target

lint: ## cargo fmt --check and clippy -D warnings
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

infra-check: setup ## terraform fmt -check, the reference and provider-schema checks, checkov on infra/ (offline)
	@scripts/infra-check.sh

test-rust: setup model ## Unit and black-box tests (they also need the multilingual base model, for detection and translation)
	@MODEL=tiny.en QUANT=q4_0 scripts/model.sh >/dev/null && MODEL=base scripts/model.sh >/dev/null
	cargo test --workspace

lambda-smoke: setup ## Every function under `cargo lambda watch`, invoked with its events/ fixture
	@scripts/lambda-smoke.sh

demo-check: setup model ## Start the demo, run the README walk-through against it, stop it
	@scripts/demo-check.sh

container-check: setup model ## The one-process image's entrypoint as Railway runs it: root-owned volume, drop to the service user, /health/ready
	@scripts/container-check.sh

walkthrough: setup ## Run the README walk-through against a running demo (BASE=http://localhost:8080)
	@scripts/walkthrough.sh

watch: setup ## Serve the HTTP functions locally on API Gateway's paths (cargo lambda watch, port 9000)
	@scripts/watch.sh

invoke-%: ## Invoke a function running under `make watch` with its fixture (EVENT=events/... to override)
	@scripts/invoke.sh $* $(EVENT)

bench: setup ## Performance figures: start-up, req/s, RSS, 300 MB upload, Whisper, Lambda zip sizes and cold starts
	@scripts/bench.sh

fuzz: setup ## A short cargo-fuzz run of every fuzz target (FUZZ_SECONDS each, default 30)
	@scripts/fuzz.sh

web-check: setup model ## Browser tests of the web page (chromium + playwright-core; screenshots in target/web-artifacts)
	@scripts/web-check.sh

fuzz-smoke: setup ## Every fuzz target builds and runs 5 s (part of `make test`)
	@FUZZ_SECONDS=5 scripts/fuzz.sh

build-lambdas: setup ## The Lambda functions as arm64 zips in target/lambda/<fn>/bootstrap.zip
	@scripts/build-lambdas.sh

deploy: setup ## Build the zips, terraform apply infra/envs/$$ENVIRONMENT (default example), smoke-test
	@scripts/deploy.sh

large-upload-check: setup model ## A 300 MB recording (UPLOAD_MB) through the resumable upload API with a cut connection, on the one-process server and on S3 (moto), transcribed (not part of `make test`)
	scripts/large-upload-check.sh

fresh-check: ## The README's test command on a bare Debian 12 root filesystem (root; not part of `make test`)
	@scripts/fresh-check.sh

smoke: ## Post-deploy smoke test against URL=<api url>
	@scripts/deploy-smoke.sh $(URL)

destroy: ## terraform destroy infra/envs/$$ENVIRONMENT (keeps a protected table: see infra/README.md)
	terraform -chdir=infra/envs/$${ENVIRONMENT:-example} destroy

clean: ## Remove build output and demo data
	cargo clean
	rm -rf data
