package main

import (
	"errors"
	"fmt"
	"io"

	"edged/internal/config"
	"edged/internal/promote"
)

func cmdPromote(args []string, stdout, stderr io.Writer) error {
	fs, dir := newFlags("promote", "promote PROXY --from ENV --to ENV [--upstream NAME | --target URL] [--dry-run] [-c DIR] [--no-wait | --control PATH]", stderr)
	from := fs.String("from", "", "environment the proxy is promoted from")
	to := fs.String("to", "", "environment it is promoted to")
	up := fs.String("upstream", "", "upstream `NAME` in the target environment (default: the source's upstream name)")
	target := fs.String("target", "", "a one-node target `URL` instead of an upstream; a URL without a path gets the path the source forwards to")
	dry := fs.Bool("dry-run", false, "validate and print the change, write nothing")
	noWait, ctl, timeout := waitFlags(fs)
	proxy, err := parseWithArg(fs, args)
	if err != nil {
		return err
	}
	if proxy == "" || *from == "" || *to == "" {
		fs.Usage()
		return errUsage
	}
	plan, err := promote.Prepare(promote.Request{Dir: *dir, Proxy: proxy, From: *from, To: *to, Upstream: *up, Target: *target})
	if err != nil {
		var errs config.Errors
		if errors.As(err, &errs) {
			for _, e := range errs {
				fmt.Fprintln(stderr, e.Error())
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
	fmt.Fprintf(stdout, "%s %s:\n\n%s\n", verb, plan.File, plan.Block)
	if *dry {
		fmt.Fprintln(stdout, "dry run: the configuration would be valid; nothing written")
		return nil
	}
	if err := plan.Apply(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "promoted %s from %s to %s\n", proxy, *from, *to)
	if *noWait {
		return nil
	}
	return askReload("promote", *dir, *ctl, *timeout, stdout, stderr)
}
