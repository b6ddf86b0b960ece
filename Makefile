PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
GO ?= go
FUZZTIME ?= 60s
PRESET ?= small

.PHONY: test build run bench bench-go fuzz mutate lint clean install

# test (default): every test of both modules, race detector on
test:
	bash scripts/install-test-deps.sh
	$(GO) test -race -count=1 -parallel 8 ./...
	cd test/interop && $(GO) test -race -count=1 ./...

# build: the daemon, to build/nsqlookupd
build:
	$(GO) build -o build/nsqlookupd ./apps/nsqlookupd

# run: build and run the daemon with its defaults
run: build
	./build/nsqlookupd

# bench: the load harness against the built daemon (PRESET=small|medium|large|xlarge)
bench: build
	$(GO) run ./bench -preset $(PRESET) -binary build/nsqlookupd

# bench-go: the registry and protocol benchmarks (testing.B)
bench-go:
	$(GO) test -run '^$$' -bench . -benchmem ./nsqlookupd ./nsqlookupd/internal/registry

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
