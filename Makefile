PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
GO ?= go
FUZZTIME ?= 60s
PRESET ?= small
SEED ?= 0
FAULTS ?= 300
DURATION ?= 30m

.PHONY: test build run bench bench-go fuzz mutate lint clean install chaos soak

# test (default): every test of both modules, race detector on; the last lines name each test that failed (with TestChaos's seed)
test:
	bash scripts/install-test-deps.sh
	$(GO) build -o build/testsummary ./scripts/testsummary
	build/testsummary -go $(GO) -- \
		. -race -count=1 -parallel 8 ./... -- \
		test/interop -race -count=1 ./...

# build: the daemon, to build/nsqlookupd
build:
	$(GO) build -o build/nsqlookupd ./apps/nsqlookupd

# run: build and run the daemon with its defaults
run: build
	./build/nsqlookupd

# bench: the load harness against the built daemon (PRESET=small|medium|large|xlarge)
bench: build
	$(GO) run ./bench -preset $(PRESET) -binary build/nsqlookupd

# bench-go: the registry, protocol and access-check benchmarks (testing.B)
bench-go:
	$(GO) test -run '^$$' -bench . -benchmem ./nsqlookupd ./nsqlookupd/internal/registry ./nsqlookupd/internal/access

# fuzz: each fuzz target for FUZZTIME; failing inputs land in testdata/fuzz
fuzz:
	for t in FuzzCommandLine FuzzIdentifyBody FuzzConn FuzzSplitCommand; do \
		$(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) ./nsqlookupd || exit 1; done
	$(GO) test -run '^$$' -fuzz '^FuzzModel$$' -fuzztime $(FUZZTIME) ./nsqlookupd/internal/registry
	$(GO) test -run '^$$' -fuzz '^FuzzNames$$' -fuzztime $(FUZZTIME) ./internal/protocol

# mutate: mutation testing of the daemon's package and the registry (gremlins); about two hours, not in CI.
# Each surviving (LIVED) mutant is a change no test notices; mutation.json lists them.
mutate:
	$(GO) run github.com/go-gremlins/gremlins/cmd/gremlins@v0.5.0 unleash --tags mutation --workers 1 --timeout-coefficient 3 -o mutation.json ./nsqlookupd

# chaos: TestChaos, FAULTS faults drawn from SEED (0: the clock), ~4 s each; table build/chaos-summary.txt (printed last), log build/chaos.log
chaos:
	bash scripts/install-test-deps.sh
	mkdir -p build
	rm -f build/chaos-summary.txt
	cd test/interop && $(GO) test -race -count=1 -timeout 0 -run '^TestChaos$$' -v \
		-args -chaos.seed=$(SEED) -chaos.faults=$(FAULTS) -chaos.summary=$(CURDIR)/build/chaos-summary.txt \
		> $(CURDIR)/build/chaos.log 2>&1; status=$$?; \
	if [ -s $(CURDIR)/build/chaos-summary.txt ]; then cat $(CURDIR)/build/chaos-summary.txt; \
	else tail -n 50 $(CURDIR)/build/chaos.log; fi; exit $$status

# soak: the churn phase's load on the built daemon for DURATION (medium preset), /metrics every 10 s; writes build/soak.csv and build/soak.svg
soak: build
	$(GO) run ./bench -preset medium -soak $(DURATION) -soak-out build/soak -daemon-flag=--log-level=warn -binary build/nsqlookupd

# lint: gofmt, go vet and staticcheck in both modules, and a go mod tidy check
lint:
	test -z "$$(gofmt -l .)"
	$(GO) vet ./...
	cd test/interop && $(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.7.0 ./...
	cd test/interop && $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.7.0 ./...
	$(GO) mod tidy -diff
	cd test/interop && $(GO) mod tidy -diff

# clean: remove build output
clean:
	rm -rf build

# install: the daemon to $(BINDIR)
install: build
	install -d $(DESTDIR)$(BINDIR)
	install -m 0755 build/nsqlookupd $(DESTDIR)$(BINDIR)/nsqlookupd
