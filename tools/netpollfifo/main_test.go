package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPatchTurnsTheLoopAround(t *testing.T) {
	stock := []byte("func netpoll() {\n" + loopStock + "\t\t_ = ev\n\t}\n}\n")
	got, err := patch(stock)
	require.NoError(t, err)
	assert.Equal(t, "func netpoll() {\n"+loopFIFO+"\t\t_ = ev\n\t}\n}\n", string(got))

	for name, in := range map[string][]byte{
		"absent": []byte("func netpoll() {}\n"),
		"twice":  bytes.Repeat(stock, 2),
		"reindented (a release that changed the loop)": bytes.ReplaceAll(stock, []byte("\t"), []byte("    ")),
	} {
		_, err := patch(in)
		assert.Error(t, err, name)
	}
}

// The installed Go's file is the one a build patches: its loop must be
// found, or every build falls back to the stock poller without the tests
// noticing.
func TestPrepareOnTheInstalledGo(t *testing.T) {
	dir := t.TempDir()
	flags, err := prepare(dir, "go")
	require.NoError(t, err)
	assert.Equal(t, "-overlay="+filepath.Join(dir, "overlay.json")+" -tags="+Tag, flags)
	patched, err := os.ReadFile(filepath.Join(dir, "netpoll_epoll.go.patched"))
	require.NoError(t, err)
	assert.Equal(t, 1, bytes.Count(patched, []byte(loopFIFO)))
	assert.NotContains(t, string(patched), loopStock)

	// A second run rewrites nothing.
	info, err := os.Stat(filepath.Join(dir, "overlay.json"))
	require.NoError(t, err)
	again, err := prepare(dir, "go")
	require.NoError(t, err)
	assert.Equal(t, flags, again)
	info2, err := os.Stat(filepath.Join(dir, "overlay.json"))
	require.NoError(t, err)
	assert.Equal(t, info.ModTime(), info2.ModTime())
}

// A path GOFLAGS cannot carry gives no flags (and so a stock build), not
// a broken one.
func TestPrepareRefusesAPathWithSpaces(t *testing.T) {
	_, err := prepare(filepath.Join(t.TempDir(), "a b"), "go")
	assert.ErrorContains(t, err, "spaces")
}

// The command prints nothing on stdout when it cannot patch, so that the
// Makefile builds with the stock runtime; the reason goes to stderr.
func TestCommandFallsBackQuietly(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the command")
	}
	bin := filepath.Join(t.TempDir(), "netpollfifo")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, string(out))
	fakeGo := filepath.Join(t.TempDir(), "go")
	require.NoError(t, os.WriteFile(fakeGo, []byte("#!/bin/sh\necho "+t.TempDir()+"\n"), 0o755))
	cmd := exec.Command(bin, "-dir", t.TempDir(), "-go", fakeGo)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Run())
	assert.Empty(t, stdout.String())
	assert.Contains(t, stderr.String(), "building with the stock runtime poller")
}
