# papo — the two commands are `make run` and `make test`; nothing but Go is needed.
SHELL := /bin/bash
PROFILE ?= local
GO ?= go
# Every package of every module in go.work (the workspace root has no
# go.mod of its own, so ./... would match nothing).
PKGS = $(shell $(GO) list -m -f '{{.Dir}}/...')
TEST_TIMEOUT ?= 25m
# The services make run builds before the launcher starts them: the
# launcher's own list (launcher.Services; TestMakefileBuildsEveryService).
SERVICES = auth gateway message notification presence ws

.PHONY: run test test-unit test-e2e test-deploy test-tools chaos bench daprd vet fmt tidy clean help

help:
	@echo "make run [PROFILE=local|redis|rabbitmq-postgres|nats-mysql|kafka-postgres]  start the whole system"
	@echo "make run TLS=1 [PAPO_ADDR=127.0.0.1:8443] [HTTP_REDIRECT=127.0.0.1:8080]  … over HTTPS/WSS with a local CA"
	@echo "make test                                   unit + end-to-end tests (real daprd sidecars)"
	@echo "make chaos [PROFILE=…]                      10 min at 200 msgs/s, a fault every 30 s; report in .data/chaos/ (docs/ops.md)"
	@echo "make bench                                  benchmarks (results: docs/benchmarks.md)"
	@echo "make daprd                                  build the pinned daprd 1.14.0 now"

## run: start every service with its Dapr sidecar (two ws replicas) and print the URL.
## On a new machine the pinned daprd's build (minutes) starts first, in the
## background, and one build of the launcher and the services runs beside
## it; the launcher then waits for that daprd build's lock
## (launcher/cmd/papo-daprd) and finds the services built in bin/.
run:
	@$(GO) build -o bin/papo-daprd ./launcher/cmd/papo-daprd
	@./bin/papo-daprd -root "$(CURDIR)" -quiet & bg=$$!; \
	  $(GO) build -o bin/ ./launcher/cmd/papo $(SERVICES:%=./services/%) || { kill $$bg 2>/dev/null; exit 1; }; \
	  exec ./bin/papo -bin "$(CURDIR)/bin" -profile $(PROFILE) $(if $(filter 1 true yes,$(TLS)),-tls) $(if $(HTTP_REDIRECT),-http-redirect $(HTTP_REDIRECT))

## test: vet, then every module's tests, end-to-end ones included.
test: vet test-deploy test-tools
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) $(PKGS)

## test-deploy: parse and cross-check dapr.yaml, docker-compose.yml, k8s/, tye.yaml and components/.
## deploy/ stays out of go.work: its kustomize/compose-go graph would raise
## x/net, x/crypto and protobuf for every service built in the workspace.
test-deploy:
	cd deploy && GOWORK=off $(GO) vet ./... && GOWORK=off $(GO) test -count=1 ./...

## test-tools: the Kafka stand-in (tools/kafkafake) and the pinned daprd
## (tools/daprd: every component file's type is one it registers, and its
## name-lookup cache), modules outside go.work so that franz-go's and
## Dapr's dependencies never reach the services' build list.
test-tools:
	cd tools/kafkafake && GOWORK=off $(GO) vet ./... && GOWORK=off $(GO) test -count=1 ./...
	cd tools/daprd && GOWORK=off $(GO) vet ./... && GOWORK=off $(GO) test -count=1 ./...

test-unit:
	$(GO) test -short -count=1 $(PKGS)

test-e2e:
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) -v ./e2e/...

## chaos: the long fault suite (e2e TestChaos): clients chat at 200 msgs/s for
## 10 minutes while a process is killed, or the profile's broker restarted,
## every 30 s; the checker holds the result to the delivery promise and the
## report (.data/chaos/<profile>.md) says what each fault cost.
## PAPO_CHAOS_DURATION and PAPO_CHAOS_RATE change the length and the rate.
chaos:
	PAPO_CHAOS=1 PROFILE=$(PROFILE) $(GO) test -p 1 -count=1 -timeout 45m -run '^TestChaos$$' -v ./e2e/

## bench also runs tools/daprd's (outside go.work): each hop's pub/sub envelope cost.
bench:
	$(GO) test -run '^$$' -bench . -benchmem -timeout 30m $(PKGS)
	cd tools/daprd && GOWORK=off $(GO) test -run '^$$' -bench . -benchmem -timeout 10m .

## daprd: build (or find) the pinned daprd once; make run and make test do it on demand.
daprd:
	@$(GO) build -o bin/papo-daprd ./launcher/cmd/papo-daprd
	@./bin/papo-daprd -root "$(CURDIR)"

vet:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

fmt:
	gofmt -w $$(git ls-files '*.go')

tidy:
	@for m in $$(find . -name go.mod -not -path './tools/*' -exec dirname {} \;); do (cd $$m && GOWORK=off $(GO) mod tidy); done

clean:
	rm -rf .data
