// Command netpollfifo prepares the build of edged against a Go runtime
// whose network poller wakes the goroutines of one poll in the order their
// sockets became ready.
//
// The runtime's Linux poller (runtime/netpoll_epoll.go) walks the events
// of an epoll_wait from first to last and pushes each waiting goroutine on
// the head of a list, so the scheduler runs the last socket to become
// ready first and the first one last. nginx's loop and wrk's handle the
// same batch first to last. In bench/ (one P, 64 keep-alive connections)
// the first-to-last order cost edged ~9% CPU a request and 8–16% on its
// p99 (bench/README, "Go's poller order").
//
// netpollfifo copies the installed runtime's file with that one loop
// walking the events from last to first, which turns the list into the
// events' order, and writes a build overlay (go help build, -overlay)
// that puts the copy in place of the file. It prints the flags to pass to
// go build, go vet and go test: the overlay, and the build tag
// netpollfifo, which tells the code and the tests it is on.
//
// When the file does not hold the loop exactly once (a Go release whose
// poller changed), nothing is overlaid: it says so on stderr, prints no
// flag, and exits 0, so that edged builds with the stock runtime.
//
// Usage: go run ./tools/netpollfifo -dir build/netpoll
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// loopStock and loopFIFO are the loop over epoll_wait's events in
// runtime.netpoll, as Go 1.21 to 1.26 write it, and its replacement.
const (
	loopStock = "\tfor i := int32(0); i < n; i++ {\n\t\tev := events[i]\n"
	loopFIFO  = "\tfor i := n - 1; i >= 0; i-- { // edged: netpollready pushes on the list's head; last to first keeps the events' order\n\t\tev := events[i]\n"
)

// Tag is the build tag the printed flags set.
const Tag = "netpollfifo"

func main() {
	dir := flag.String("dir", "build/netpoll", "where to write the patched file and overlay.json")
	goTool := flag.String("go", "go", "the go command whose GOROOT is patched")
	flag.Parse()
	flags, err := prepare(*dir, *goTool)
	if err != nil {
		fmt.Fprintf(os.Stderr, "netpollfifo: %v; building with the stock runtime poller\n", err)
		return
	}
	fmt.Println(flags)
}

// prepare writes dir/netpoll_epoll.go.patched and dir/overlay.json for the GOROOT
// of goTool and returns the go command flags that use them.
func prepare(dir, goTool string) (string, error) {
	out, err := exec.Command(goTool, "env", "GOROOT").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOROOT: %w", err)
	}
	goroot := strings.TrimSpace(string(out))
	src := filepath.Join(goroot, "src", "runtime", "netpoll_epoll.go")
	stock, err := os.ReadFile(src)
	if err != nil {
		return "", err
	}
	patched, err := patch(stock)
	if err != nil {
		return "", fmt.Errorf("%s: %w", src, err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return "", err
	}
	// Not a .go file: go vet ./... and gofmt -l . leave it alone.
	copyPath := filepath.Join(abs, "netpoll_epoll.go.patched")
	if err := writeIfChanged(copyPath, patched); err != nil {
		return "", err
	}
	overlay, err := json.Marshal(map[string]map[string]string{"Replace": {src: copyPath}})
	if err != nil {
		return "", err
	}
	overlayPath := filepath.Join(abs, "overlay.json")
	if err := writeIfChanged(overlayPath, overlay); err != nil {
		return "", err
	}
	if strings.ContainsAny(overlayPath, " \t\n'\"") {
		// GOFLAGS splits on spaces and has no quoting.
		return "", fmt.Errorf("%q: the overlay's path must not contain spaces or quotes", overlayPath)
	}
	return "-overlay=" + overlayPath + " -tags=" + Tag, nil
}

// patch returns the runtime's file with its events loop walking last to
// first; an error when the loop is not there exactly once.
func patch(stock []byte) ([]byte, error) {
	if n := bytes.Count(stock, []byte(loopStock)); n != 1 {
		return nil, fmt.Errorf("the events loop of netpoll found %d times, want 1", n)
	}
	return bytes.Replace(stock, []byte(loopStock), []byte(loopFIFO), 1), nil
}

// writeIfChanged leaves a file with the same content untouched, and
// replaces one by a rename, so that two builds running at once never read
// a half-written file.
func writeIfChanged(path string, b []byte) error {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, b) {
		return nil
	}
	tmp := fmt.Sprintf("%s.%d.tmp", path, os.Getpid())
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
