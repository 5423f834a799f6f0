# edged: build, demo and test. GNU make.

GO ?= go

# The go command's flags that build edged against the Go runtime with its
# network poller's wake-up order turned around (tools/netpollfifo: ~9%
# less CPU a request and a lower p99 in bench/); empty, and a warning,
# where the installed Go's poller is not the one it knows. A shell
# expansion, evaluated by the recipes that use it.
NETPOLL = $$($(GO) run ./tools/netpollfifo -dir build/netpoll)

.DEFAULT_GOAL := build
.PHONY: build demo-backend certs run test check clean distclean bench

build:
	$(GO) build $(NETPOLL) -o bin/edged ./cmd/edged

demo-backend:
	$(GO) build -o bin/demo-backend ./tools/demo-backend

# Creates certs/ca.pem and a certificate per virtual host of conf.d/.
# Re-running keeps the CA and each certificate that is good for 30 more
# days (and still covers its group's hostnames); it makes the others again.
certs:
	$(GO) run ./tools/devcerts -dir certs

# The example: demo backends in the background, edged in the foreground.
# The EXIT trap stops the backends however edged ends; INT/TERM go through
# exit so that the trap also runs on Ctrl-C.
run: build demo-backend certs
	mkdir -p var/log && mkdir -p -m 0750 var/state
	bin/demo-backend & backend=$$!; \
	trap 'kill $$backend 2>/dev/null; wait $$backend 2>/dev/null' EXIT; \
	trap 'exit 130' INT TERM; \
	bin/edged serve -c conf.d

test:
	@unformatted=$$(gofmt -l .); \
	if [ -n "$$unformatted" ]; then echo "gofmt -l: not formatted:"; echo "$$unformatted"; exit 1; fi
	# Vetted and tested as built: with the poller's overlay (GOFLAGS also
	# reaches the go build of the process tests).
	GOFLAGS="$$GOFLAGS $(NETPOLL)" $(GO) vet ./...
	GOFLAGS="$$GOFLAGS $(NETPOLL)" $(GO) test -race -count=1 ./...
	# Without -race, with one P: the allocation counts (the race detector's
	# sync.Pool would skew them), the client and upstream sockets' raw
	# system calls, which edged makes with one P only (internal/rawconn;
	# with -race they are syscall.Read and syscall.Write), and the poller's
	# wake-up order (the race detector shuffles run queues).
	GOFLAGS="$$GOFLAGS $(NETPOLL)" GOMAXPROCS=1 $(GO) test -count=1 ./edge ./internal/upstream ./internal/rawconn ./tools/netpollfifo

# Validates conf.d/ like `nginx -t` (the certificates are part of it).
check: build certs
	bin/edged check -c conf.d

# Side-by-side load benchmark against nginx and HAProxy (loopback only;
# installs them from Debian's packages first). See bench/README.md.
bench: build
	bash bench/setup.sh && bash bench/run.sh

# Keeps certs/: a new CA would have to be trusted again by every client.
clean:
	rm -rf bin var build

distclean: clean
	rm -rf certs
