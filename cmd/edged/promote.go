package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"edged/internal/atomicfile"
	"edged/internal/config"
	"edged/internal/history"
	"edged/internal/promote"
	"edged/internal/unidiff"
)

// nodeFlags collects a repeated --node URL.
type nodeFlags []string

func (n *nodeFlags) String() string     { return strings.Join(*n, ",") }
func (n *nodeFlags) Set(v string) error { *n = append(*n, v); return nil }

func cmdPromote(args []string, stdout, stderr io.Writer) error {
	fs, dir := newFlags("promote", "promote PROXY --from ENV --to ENV [--upstream NAME | --target URL] [--with-upstream --node URL...] [--dry-run] [-c DIR] [--no-wait | --control PATH]", stderr)
	from := fs.String("from", "", "environment the proxy is promoted from")
	to := fs.String("to", "", "environment it is promoted to")
	up := fs.String("upstream", "", "upstream `NAME` in the target environment (default: the source's upstream name)")
	target := fs.String("target", "", "a one-node target `URL` instead of an upstream; a URL without a path gets the path the source forwards to")
	withUp := fs.Bool("with-upstream", false, "copy the source's upstream into the target environment too (it must not have it), with --node as its nodes")
	var nodes nodeFlags
	fs.Var(&nodes, "node", "a node `URL` of the upstream --with-upstream copies (repeatable)")
	dry := fs.Bool("dry-run", false, "validate and print the diff of the file, write nothing")
	noWait, ctl, timeout := waitFlags(fs)
	proxy, err := parseWithArg(fs, args)
	if err != nil {
		return err
	}
	if proxy == "" || *from == "" || *to == "" {
		fs.Usage()
		return errUsage
	}
	unlock, err := lockConfig("promote", *dir, stderr)
	if err != nil {
		return err
	}
	defer unlock() // at the latest; released before the reload is asked for
	plan, err := promote.Prepare(promote.Request{Dir: *dir, Proxy: proxy, From: *from, To: *to, Upstream: *up, Target: *target, WithUpstream: *withUp, Nodes: nodes})
	if err != nil {
		var errs config.Errors
		if errors.As(err, &errs) {
			for _, e := range errs {
				fmt.Fprintln(stderr, errorLine(e))
			}
			var before *promote.InvalidBeforeError
			if errors.As(err, &before) {
				// The directory's own errors: the fault is not in the
				// proxy promoted.
				fmt.Fprintf(stderr, "edged promote: the configuration in %s is invalid as it is, before the promotion; nothing written (fix it first: edged check -c %s)\n", visibleName(*dir), visibleName(*dir))
				return errSilent
			}
			fmt.Fprintf(stderr, "edged promote: the configuration would be invalid; nothing written\n")
			return errSilent
		}
		return err
	}
	verb := "add to"
	if plan.Replaced {
		verb = "replace in"
	}
	// The file and its name are the target environment's operators':
	// shown, not sent to the terminal as they are (see visible).
	fmt.Fprintf(stdout, "%s %s:\n\n", verb, visibleName(plan.File))
	rel := plan.File
	if r, err := filepath.Rel(*dir, plan.File); err == nil {
		rel = filepath.ToSlash(r)
	}
	rel = visibleName(rel)
	fmt.Fprintln(stdout, visible(unidiff.Unified("a/"+rel, "b/"+rel, string(plan.Old), string(plan.Content))))
	if *dry {
		fmt.Fprintln(stdout, "dry run: the configuration would be valid; nothing written")
		return nil
	}
	claim := announce(*dir, *ctl, history.CausePromote, map[string]string{plan.File: config.SHA256Hex(plan.Content)}, *timeout)
	removed, err := plan.Apply()
	sayRemoved(removed, stdout)
	if err != nil {
		return err
	}
	unlock()
	fmt.Fprintf(stdout, "promoted %s from %s to %s\n", proxy, *from, *to)
	if *noWait {
		return nil
	}
	return askReload("promote", *dir, *ctl, *timeout, reloadArgs{Cause: history.CausePromote, SudoUser: os.Getenv("SUDO_USER"), Claim: claim}, stdout, stderr)
}

// lockConfig takes the lock of the config directory for a command that
// validates the directory as it will be and then writes (promote,
// rollback), saying on stderr when it waits for another such command.
func lockConfig(name, dir string, stderr io.Writer) (unlock func(), err error) {
	var once sync.Once
	release, err := atomicfile.LockTree(dir, func() {
		fmt.Fprintf(stderr, "edged %s: waiting for another edged promote or rollback on %s to finish\n", name, visibleName(filepath.Clean(dir)))
	})
	if err != nil {
		return nil, fmt.Errorf("another edged promote or rollback on %s has not finished: %w", visibleName(filepath.Clean(dir)), err)
	}
	return func() { once.Do(release) }, nil
}

// sayRemoved says which temp files, left by a promote or rollback that
// was killed while writing, a promote or rollback removed
// (atomicfile.RemoveLeftTempsIn).
func sayRemoved(removed []string, stdout io.Writer) {
	for _, p := range removed {
		fmt.Fprintf(stdout, "removed %s (left by an edged promote or rollback that did not finish)\n", visibleName(p))
	}
}
