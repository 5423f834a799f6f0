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
  edged history [GEN] [-c DIR]  list the applied generations recorded in state_dir, with the cause
                                and the user of each; with GEN, one generation in detail
  edged diff    [GEN [GEN2]] [-c DIR]
                                unified diff of the config files of two generations (GEN2 default:
                                the serving one); without GEN, the pending changes of DIR
  edged rollback GEN [-c DIR] [--no-wait]
                                restore the config files of generation GEN into DIR, then have the
                                running edged reload them; exit 1 with the errors when it refuses
  edged promote PROXY --from ENV --to ENV [--upstream NAME | --target URL]
                [--with-upstream --node URL...] [--dry-run] [-c DIR] [--no-wait]
                                copy a proxy into another environment's files (test → uat → prod),
                                validated first, then have the running edged reload; exit 1 when it refuses
  edged version                 print the version

Run 'edged COMMAND -h' (or 'edged help COMMAND') for what a command does and its flags.
Exit status: 0 success, 1 failure (an invalid configuration, a failed reload), 2 wrong usage.
`

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// errUsage marks a command-line mistake: exit code 2.
var errUsage = errors.New("usage")

// commandHelp says what each subcommand does, for 'edged NAME -h'.
var commandHelp = map[string]string{
	"serve": `Run edged: one TLS listener for every virtual host, routing by SNI, Host and
base path, one worker pool per environment. It reloads by itself when a file
under DIR (or a certificate it names) changes, on SIGHUP, and on 'edged
reload'; a reload that fails keeps serving the last good configuration.
SIGTERM, SIGINT and SIGQUIT (nginx's graceful stop) drain in-flight
requests and exit; SIGUSR1 reopens log files; SIGABRT dumps the goroutines
and exits 2. Under systemd (Type=notify) it reports READY, RELOADING and STATUS.`,
	"check": `Validate DIR like 'nginx -t': read every *.toml file, check every
reference, load every certificate and key, and compile the routing table,
without starting anything. Prints a summary to stdout and the warnings to
stderr (file:line: warning: ...). When the configuration is invalid, prints
every error, one per line (file:line: object: field: message).

Exit status: 0 valid (warnings do not fail it), 1 invalid, 2 wrong usage.`,
	"routes": `Validate DIR like 'edged check' and print its routing table, one line per
hostname and base path: the env group, the environment, the proxy and the
target URLs of its upstream's nodes (the first 10, then how many more). Then
each environment's home, with its owner and group. Exit 1 with every error
when DIR is invalid.`,
	"reload": `Ask the running edged, over its control socket, to reload now, and wait for
the outcome: exit 0 with the new generation and the environments it added,
changed, removed and kept; exit 1 with the errors (file:line: message) when
the reload failed, in which case the running edged keeps serving what it
served. systemd's ExecReload runs it, so 'systemctl reload' tells the truth.`,
	"history": `List the generations the running edged applied, recorded in the state_dir of
DIR: number, time, cause (startup, file change, SIGHUP, edged reload, edged
promote, edged rollback), the user who ran the command (from the control
socket's peer credentials; "alice (via sudo, uid 0)" under sudo), number of
files and the objects changed. With GEN: that generation in detail, with
each changed file's owner and modification time and every file's SHA-256.`,
	"diff": `Print a unified diff of config files (the .toml files only; certificates and
keys are never read):
  edged diff GEN GEN2   from generation GEN to GEN2, from the history
  edged diff GEN        from GEN to the generation the running edged serves
  edged diff            from the serving generation to the files now in DIR:
                        what a reload would apply
The serving generation is asked of the running edged; when it does not
answer, the newest generation in the history is used (and said so).`,
	"rollback": `Restore the configuration files of generation GEN (see 'edged history') into
DIR; files that GEN did not have are moved aside. Each file keeps the mode
and owner of the file it replaces (a new one those of its directory). Then
it asks the running edged, over its control socket, to reload and waits for
the outcome: exit 0 when the files serve, 1 with the errors when the running
edged refuses them (it keeps serving what it served) or does not answer.
--no-wait writes the files and exits.`,
	"promote": `Copy proxy PROXY from one environment into another environment's files
(test -> uat -> prod), with the same name, base path and target path,
forwarding to the target environment's upstream of the same name (or
--upstream NAME, or --target URL). The whole directory is validated as it
would be first; nothing is written when that fails. The path the source
forwards to is kept: --target with a URL without a path gets it, one with
another path is refused. The file keeps its mode and owner. Then, like
rollback, it waits for the running edged's reload: exit 1 with the errors
when it refuses the file (--no-wait: write and exit). It prints the unified
diff of the file it writes; --dry-run prints it and writes nothing.

When the target environment lacks the upstream the copy forwards to,
--with-upstream copies the source's upstream block (every setting but its
nodes) with --node URL (repeatable) as its nodes. It is refused when the
target already has that upstream, and needs at least one --node.

The generation the files make is recorded as "edged promote" by the user who
ran it, even when edged's file watcher applies it before the command asks.`,
}

// versionHelp is 'edged version -h'; version takes no flags.
const versionHelp = `Usage: edged version

Print the version of this edged binary.
`

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	name := args[0]
	switch name {
	case "-h", "--help", "-help":
		fmt.Fprint(stdout, usage)
		return 0
	case "help":
		if len(args) == 1 {
			fmt.Fprint(stdout, usage)
			return 0
		}
		if len(args) > 2 {
			fmt.Fprintf(stderr, "edged help: unexpected arguments %q\nUsage: edged help [COMMAND]\n", args[2:])
			return 2
		}
		return run([]string{args[1], "-h"}, stdout, stderr)
	case "version", "--version":
		switch {
		case len(args) == 1:
			fmt.Fprintln(stdout, "edged", version)
			return 0
		case len(args) == 2 && isHelpFlag(args[1]):
			fmt.Fprint(stdout, versionHelp)
			return 0
		}
		fmt.Fprintf(stderr, "edged version: unexpected arguments %q\n\n%s", args[1:], versionHelp)
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
		"diff":     cmdDiff,
	}
	cmd, ok := cmds[name]
	if !ok {
		fmt.Fprintf(stderr, "edged: unknown command %q\n\n%s", name, usage)
		return 2
	}
	err := cmd(args[1:], stdout, stderr)
	var help *helpRequest
	switch {
	case err == nil:
		return 0
	case errors.As(err, &help):
		fmt.Fprint(stdout, help.text)
		return 0
	case errors.Is(err, errUsage):
		return 2
	case errors.Is(err, errSilent):
		return 1
	default:
		// An error may name a file or quote a value: anyone's who may
		// write to a home (see visible).
		fmt.Fprintf(stderr, "edged %s: %s\n", name, visible(err.Error()))
		return 1
	}
}

func isHelpFlag(a string) bool { return a == "-h" || a == "-help" || a == "--help" }

// errSilent is returned after a command already printed its errors.
var errSilent = errors.New("failed")
