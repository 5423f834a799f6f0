# edged: build, demo and test. GNU make.

GO ?= go

.DEFAULT_GOAL := build
.PHONY: build demo-backend certs run test check clean distclean bench

# The version is the commit (git describe; "-dirty" with uncommitted
# changes), so that `edged version` and bench reports say which code ran.
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o bin/edged ./cmd/edged

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
	$(GO) vet ./...
	$(GO) test -race -count=1 ./...
	# Without -race, with one P: the allocation counts (the race detector's
	# sync.Pool would skew them), and the client and upstream sockets' raw
	# system calls, which edged makes with one P only (internal/rawconn;
	# with -race they are syscall.Read and syscall.Write).
	GOMAXPROCS=1 $(GO) test -count=1 ./edge ./internal/upstream ./internal/rawconn

# Validates conf.d/ like `nginx -t` (the certificates are part of it, and
# the directory of the access logs, which edged serve does not create).
check: build certs
	mkdir -p var/log
	bin/edged check -c conf.d

# Side-by-side load benchmark against nginx and HAProxy (loopback only;
# installs them from Debian's packages first). See bench/README.md.
bench: build
	bash bench/setup.sh && bash bench/run.sh

# Keeps certs/: a new CA would have to be trusted again by every client.
clean:
	rm -rf bin var

distclean: clean
	rm -rf certs
