// Command edged is an edge proxy for APIs served in several environments
// from one fleet of machines, configured by TOML files in a directory.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
)

const usage = `edged — an edge proxy for environments (test, UAT, prod, ...) configured by files

Usage:
  edged serve   -c DIR          run: TLS per virtual host, routing, one worker pool per environment;
                                reloads itself when files in DIR (or the certificates) change, on
                                SIGHUP, or on 'edged reload'
  edged check   -c DIR          validate DIR like 'nginx -t': loads every file and certificate,
                                prints a summary and warnings; exit 1 with every error, one per line
  edged routes  -c DIR          print the routing table: hostname, base path, group, environment,
                                proxy and target nodes
  edged reload  [-c DIR | --control PATH]
                                ask the running edged to reload now; exit 0 with the new generation,
                                1 with the errors (file:line: message)
  edged history [-c DIR]        list the applied generations recorded in state_dir
  edged rollback GEN [-c DIR]   restore the config files of generation GEN into DIR; the running
                                edged then reloads them as usual
  edged promote PROXY --from ENV --to ENV [--upstream NAME | --target URL] [--dry-run] [-c DIR]
                                copy a proxy into another environment's files (test → uat → prod),
                                validated first; the running edged reloads it
  edged version                 print the version

Run 'edged COMMAND -h' for the flags of a command.
`

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// errUsage marks a command-line mistake: exit code 2.
var errUsage = errors.New("usage")

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmds := map[string]func([]string, io.Writer, io.Writer) error{
		"serve":    cmdServe,
		"check":    cmdCheck,
		"routes":   cmdRoutes,
		"reload":   cmdReload,
		"history":  cmdHistory,
		"rollback": cmdRollback,
		"promote":  cmdPromote,
	}
	name := args[0]
	switch name {
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	case "version", "--version":
		fmt.Fprintln(stdout, "edged", version)
		return 0
	}
	cmd, ok := cmds[name]
	if !ok {
		fmt.Fprintf(stderr, "edged: unknown command %q\n\n%s", name, usage)
		return 2
	}
	err := cmd(args[1:], stdout, stderr)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errUsage):
		return 2
	case errors.Is(err, errSilent):
		return 1
	default:
		fmt.Fprintf(stderr, "edged %s: %v\n", name, err)
		return 1
	}
}

// errSilent is returned after a command already printed its errors.
var errSilent = errors.New("failed")
