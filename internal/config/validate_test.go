package config

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// markerLine returns the line of content holding "#!", which marks where a
// test case expects its error; 0 when there is none.
func markerLine(content string) int {
	for i, line := range strings.Split(content, "\n") {
		if strings.Contains(line, "#!") {
			return i + 1
		}
	}
	return 0
}

type validationCase struct {
	name string
	// file the case writes: "00-server.toml" replaces the base [server],
	// anything else is added next to the base objects.
	file string
	toml string
	// want is the error the case must produce, in file, on the line
	// marked "#!"; loads (nil) means the configuration must load.
	want *wantError
}

// wantError is an expected error: its Object and Field exactly, and
// substrings of its message.
type wantError struct {
	object, field string
	msg           []string
}

// fails expects an error of object ("" for the file itself) and field (""
// for the object as a whole) whose message holds every msg.
func fails(object, field string, msg ...string) *wantError {
	return &wantError{object: object, field: field, msg: msg}
}

// loads marks a case that must load without errors.
var loads *wantError

// addProxy is a valid extra proxy in environment "test".
const addProxy = `
[[proxy]]
name = "orders"
environment = "test"
base_path = "/orders"
`

// addUpstream is the start of a valid extra upstream in environment "test".
const addUpstream = `
[[upstream]]
name = "extra"
environment = "test"
nodes = [{ url = "http://127.0.0.1:9002" }]
`

// addGroup attaches "test" to a second group with its own virtual host.
const addGroup = `
[[virtual_host]]
name = "g2"
cert_file = "../certs/test.pem"
key_file = "../certs/test.key"
`

func serverCases() []validationCase {
	srv := func(name, body string, want *wantError) validationCase {
		return validationCase{name: "server/" + name, file: "00-server.toml", toml: "[server]\n" + body, want: want}
	}
	return []validationCase{
		srv("defaults", "", loads),
		srv("all-set", `https = "127.0.0.1:0"
http = "127.0.0.1:0"
http_mode = "serve"
admin = ""
state_dir = "/tmp/edged-state"
drain_timeout = "5s"
shutdown_delay = "0s"
reload_debounce = "100ms"
reload_max_wait = "1s"
rescan_interval = "0s"
default_virtual_host = "test-group"
max_body_bytes = 1024
history_keep = 10
read_header_timeout = "5s"
read_timeout = "0s"
write_timeout = "0s"
idle_timeout = "30s"
max_header_bytes = 1024
h2_max_concurrent_streams = 100
underscores_in_headers = true
`, loads),
		srv("underscores-not-bool", `underscores_in_headers = "on" #!`, fails("server", "underscores_in_headers", "must be true or false, not a string")),
		srv("https-no-port", `https = "443" #!`, fails("server", "https", `"443" is not host:port`)),
		srv("https-empty", `https = "" #!`, fails("server", "https", "required")),
		srv("https-bad-port", `https = ":99999" #!`, fails("server", "https", "not a number from 0 to 65535")),
		srv("https-bad-host", `https = "a b:443" #!`, fails("server", "https", "neither an IP address nor a hostname")),
		// Go listens on "+8443" and "08443" as on 8443: the overlap was
		// not seen, and serve failed to bind what check had passed.
		srv("https-port-sign", `https = "127.0.0.1:+8443" #!`, fails("server", "https", `port "+8443" is not a number from 0 to 65535`)),
		srv("listeners-overlap-port-spelling", "https = \"127.0.0.1:8443\"\nadmin = \"127.0.0.1:08443\" #!", fails("server", "admin", "overlaps https")),
		srv("https-short-ipv4", `https = "127.1:443" #!`, fails("server", "https", "neither an IP address nor a hostname")),
		srv("http-bad", `http = "nope" #!`, fails("server", "http", "not host:port")),
		srv("http-mode-bad", "http = \"127.0.0.1:0\"\nhttp_mode = \"both\" #!", fails("server", "http_mode", `"both" is not a mode`)),
		srv("http-mode-without-http", `http_mode = "serve" #!`, fails("server", "http_mode", "without http")),
		srv("admin-off", `admin = ""`, loads),
		srv("admin-bad", `admin = "localhost" #!`, fails("server", "admin", "not host:port")),
		// Go listens on localhost's first IPv4 address: edged check passed
		// these, and edged serve failed to bind the second.
		srv("listeners-overlap-localhost", "https = \"127.0.0.1:8443\"\nadmin = \"localhost:8443\" #!", fails("server", "admin", "overlaps https")),
		srv("listeners-overlap-mapped", "https = \"127.0.0.1:8443\"\nhttp = \"[::ffff:127.0.0.1]:8443\" #!", fails("server", "http", "overlaps https")),
		srv("listeners-localhost-ipv6", "https = \"[::1]:8443\"\nadmin = \"localhost:8443\"", loads),
		srv("listeners-overlap", "https = \"0.0.0.0:8443\"\nadmin = \"127.0.0.1:8443\" #!", fails("server", "admin", "overlaps https")),
		// 0.0.0.0 is every IPv4 address only, [::] and an empty host
		// both families (edge listens so): 0.0.0.0 beside an IPv6
		// address of the same port binds both.
		srv("listeners-ipv4-wildcard-beside-ipv6", "https = \"0.0.0.0:8443\"\nadmin = \"[::1]:8443\"", loads),
		srv("listeners-overlap-ipv4-wildcard-mapped", "https = \"[::ffff:0.0.0.0]:8443\"\nadmin = \"127.0.0.1:8443\" #!", fails("server", "admin", "overlaps https")),
		srv("listeners-overlap-ipv4-wildcard-name", "https = \"0.0.0.0:8443\"\nadmin = \"localhost:8443\" #!", fails("server", "admin", "overlaps https")),
		srv("listeners-overlap-wildcards", "https = \"0.0.0.0:8443\"\nhttp = \"[::]:8443\" #!", fails("server", "http", "overlaps https")),
		srv("listeners-overlap-dual-stack", "https = \"[::]:8443\"\nadmin = \"127.0.0.1:8443\" #!", fails("server", "admin", "overlaps https")),
		srv("listeners-overlap-empty-host", "https = \":8443\"\nadmin = \"[::1]:8443\" #!", fails("server", "admin", "overlaps https")),
		// The message said the address was neither an IP address nor a
		// hostname.
		srv("listener-ipv6-zone", `admin = "[fe80::1%eth0]:9901" #!`, fails("server", "admin", `an IPv6 zone "%eth0" is not supported`)),
		srv("state-dir-empty", `state_dir = "" #!`, fails("server", "state_dir", "must not be empty")),
		srv("drain-zero", `drain_timeout = "0s" #!`, fails("server", "drain_timeout", "must be a positive duration")),
		srv("shutdown-delay-negative", `shutdown_delay = "-1s" #!`, fails("server", "shutdown_delay", "must not be negative")),
		srv("debounce-garbage", `reload_debounce = "soon" #!`, fails("server", "reload_debounce", `invalid duration "soon"`)),
		srv("duration-integer", `drain_timeout = 30 #!`, fails("server", "drain_timeout", `must be a duration string like "30s", not an integer`)),
		srv("max-wait-short", "reload_debounce = \"1s\"\nreload_max_wait = \"500ms\" #!", fails("server", "reload_max_wait", "shorter than reload_debounce")),
		srv("rescan-negative", `rescan_interval = "-1s" #!`, fails("server", "rescan_interval", "must not be negative")),
		// A timeout under a millisecond loaded (HAProxy refuses one as a
		// "timer underflow"): "1ns" for "1s" failed every connection at once.
		srv("drain-sub-millisecond", `drain_timeout = "1ns" #!`, fails("server", "drain_timeout", `"1ns" is shorter than 1ms`)),
		srv("read-header-sub-millisecond", `read_header_timeout = "999us" #!`, fails("server", "read_header_timeout", `"999us" is shorter than 1ms`)),
		srv("write-timeout-sub-millisecond", `write_timeout = "1ns" #!`, fails("server", "write_timeout", `"1ns" is shorter than 1ms`, `"0s"`)),
		srv("idle-timeout-millisecond", `idle_timeout = "1ms"`, loads),
		// Each rescan hashes every file: "1ns" spun a core.
		srv("rescan-tiny", `rescan_interval = "1ms" #!`, fails("server", "rescan_interval", `"1ms" is shorter than "100ms"`, `"0s" switches it off`)),
		// A sub-second rescan loaded before the minimum came: only the
		// absurd is refused, so that no working config stops loading.
		srv("rescan-half-second", `rescan_interval = "500ms"`, loads),
		srv("rescan-second", `rescan_interval = "1s"`, loads),
		srv("read-header-zero", `read_header_timeout = "0s" #!`, fails("server", "read_header_timeout", "positive")),
		// Past a year a deadline (now + the timeout) overflowed: every
		// HTTP/1.1 connection was cut at once instead of never.
		srv("read-header-huge", `read_header_timeout = "2500000h" #!`, fails("server", "read_header_timeout", `"2500000h" is longer than 8760h`)),
		srv("duration-a-year", `read_timeout = "8760h"`, loads),
		srv("duration-past-a-year", `write_timeout = "8760h0m0.001s" #!`, fails("server", "write_timeout", "longer than 8760h")),
		srv("idle-zero", `idle_timeout = "0s" #!`, fails("server", "idle_timeout", "positive")),
		srv("max-body-zero", `max_body_bytes = 0 #!`, fails("server", "max_body_bytes", "must be positive")),
		srv("history-zero", `history_keep = 0 #!`, fails("server", "history_keep", "out of range (1 to 10000)")),
		srv("header-bytes-small", `max_header_bytes = 100 #!`, fails("server", "max_header_bytes", "out of range (1024 to 1048576)")),
		srv("h2-streams-zero", `h2_max_concurrent_streams = 0 #!`, fails("server", "h2_max_concurrent_streams", "out of range (1 to 10000)")),
		srv("h2-streams-negative", `h2_max_concurrent_streams = -1 #!`, fails("server", "h2_max_concurrent_streams", "-1 is out of range (1 to 10000)")),
		srv("h2-streams-past-uint32", `h2_max_concurrent_streams = 4294967296 #!`, fails("server", "h2_max_concurrent_streams", "4294967296 is out of range (1 to 10000)")),
		srv("max-connections-zero", `max_connections = 0 #!`, fails("server", "max_connections", "0 is out of range (1 to 10000000)")),
		srv("max-connections-one", `max_connections = 1`, loads),
		srv("wrong-type", `max_body_bytes = "ten" #!`, fails("server", "max_body_bytes", "must be an integer, not a string")),
		srv("default-vhost-unknown", `default_virtual_host = "nope" #!`, fails("server", "default_virtual_host", `"nope" is not a virtual_host`)),
		srv("unknown-key", `workerz = 4 #!`, fails("server", "workerz", `unknown key "workerz"`)),
		{name: "server/array-not-table", file: "00-server.toml", toml: "[[server]] #!\nhttps = \":443\"", want: fails("", "", "server must be a table")},
	}
}

func environmentCases() []validationCase {
	env := func(name, body string, want *wantError) validationCase {
		return validationCase{name: "environment/" + name, toml: body, want: want}
	}
	// Extra environments must be attached to a group to avoid a warning;
	// warnings do not fail the load, so they are left unattached here.
	return []validationCase{
		env("full", `[[environment]]
name = "uat"
workers = 8
queue = 0
queue_timeout = "250ms"
max_body_bytes = 1
labels = { stage = "uat", _x = "y" }
[environment.rules.prometheus]
[environment.rules.access_log]
path = ""
[environment.rules.audit_log]
enabled = false
`, loads),
		env("name-missing", "[[environment]] #!\nworkers = 1", fails(`environment ""`, "name", "required")),
		env("name-invalid", `[[environment]]
name = "-uat" #!`, fails(`environment "-uat"`, "name", "not a valid name")),
		env("name-too-long", `[[environment]]
name = "`+strings.Repeat("a", 64)+`" #!`, fails(`environment "`+strings.Repeat("a", 64)+`"`, "name", "not a valid name")),
		// Each environment's audit log is state_dir/audit/NAME.log: on a
		// case-insensitive file system, "Test" and "test" wrote one file.
		env("name-differs-in-case", `[[environment]]
name = "Test" #!`, fails(`environment "Test"`, "name", `"Test" differs from environment "test" at `, `10-base.toml:1 only in case`)),
		env("name-duplicate", `[[environment]]
name = "test" #!`, fails(`environment "test"`, "name", `"test" is already defined at`, "10-base.toml:1")),
		env("workers-zero", `[[environment]]
name = "uat"
workers = 0 #!`, fails(`environment "uat"`, "workers", "0 is out of range (1 to 100000)")),
		env("workers-huge", `[[environment]]
name = "uat"
workers = 100001 #!`, fails(`environment "uat"`, "workers", "out of range")),
		env("queue-negative", `[[environment]]
name = "uat"
queue = -1 #!`, fails(`environment "uat"`, "queue", "-1 is out of range (0 to 1000000)")),
		env("queue-timeout-zero", `[[environment]]
name = "uat"
queue_timeout = "0s" #!`, fails(`environment "uat"`, "queue_timeout", "positive")),
		env("queue-timeout-sub-millisecond", `[[environment]]
name = "uat"
queue_timeout = "1ns" #!`, fails(`environment "uat"`, "queue_timeout", `"1ns" is shorter than 1ms`)),
		env("reject-delay-sub-millisecond", `[[environment]]
name = "uat"
reject_delay = "1ns" #!`, fails(`environment "uat"`, "reject_delay", `"1ns" is shorter than 1ms`)),
		env("reject-delay-zero", `[[environment]]
name = "uat"
reject_delay = "0s"
`, loads),
		env("reject-delay-negative", `[[environment]]
name = "uat"
reject_delay = "-1s" #!`, fails(`environment "uat"`, "reject_delay", `"-1s" is out of range ("0s" = answer at once, up to "1m0s")`)),
		env("reject-delay-long", `[[environment]]
name = "uat"
reject_delay = "2m" #!`, fails(`environment "uat"`, "reject_delay", "out of range")),
		env("reject-delay-garbage", `[[environment]]
name = "uat"
reject_delay = "later" #!`, fails(`environment "uat"`, "reject_delay", `invalid duration "later"`)),
		env("reject-delay-typo", `[[environment]]
name = "uat"
reject_dealy = "1s" #!`, fails(`environment "uat"`, "reject_dealy", `unknown key "reject_dealy" (did you mean "reject_delay"?)`)),
		env("max-body-zero", `[[environment]]
name = "uat"
max_body_bytes = 0 #!`, fails(`environment "uat"`, "max_body_bytes", "must be positive")),
		env("label-key", `[[environment]]
name = "uat"
labels = { "1stage" = "x" } #!`, fails(`environment "uat"`, "labels.1stage", "label key \"1stage\" is invalid")),
		env("label-value-type", `[[environment]]
name = "uat"
labels = { stage = 1 } #!`, fails(`environment "uat"`, "labels.stage", "must be a string, not an integer")),
		// Labels go into every series of the environment on /metrics and
		// into each of its log lines: their size is bounded.
		env("labels-most", `[[environment]]
name = "uat"
labels = { l0 = "x", l1 = "x", l2 = "x", l3 = "x", l4 = "x", l5 = "x", l6 = "x", l7 = "x", l8 = "x", l9 = "x", l10 = "x", l11 = "x", l12 = "x", l13 = "x", l14 = "x", long = "vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv" }`, loads),
		env("labels-too-many", `[[environment]]
name = "uat"
labels = { l0 = "x", l1 = "x", l2 = "x", l3 = "x", l4 = "x", l5 = "x", l6 = "x", l7 = "x", l8 = "x", l9 = "x", l10 = "x", l11 = "x", l12 = "x", l13 = "x", l14 = "x", l15 = "x", l16 = "x" } #!`, fails(`environment "uat"`, "labels", "17 labels, more than 16")),
		env("label-value-long", `[[environment]]
name = "uat"
labels = { stage = "x",
  team = "vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv" } #!`, fails(`environment "uat"`, "labels.team", "129 bytes long, more than 128")),
		// A label value is written as it is into every series of the
		// environment on /metrics: an escape sequence in it reached the
		// terminal of whoever ran curl on /metrics.
		env("label-value-escape", `[[environment]]
name = "uat"
labels = { team = "a\u001b[2Jb" } #!`, fails(`environment "uat"`, "labels.team", `"a\x1b[2Jb" holds a control character`)),
		env("label-value-newline", `[[environment]]
name = "uat"
labels = { team = "a\nb" } #!`, fails(`environment "uat"`, "labels.team", "holds a control character")),
		// A bidirectional control is no C0 or C1 one, and a terminal
		// that lays out right-to-left text reorders the line after it.
		env("label-value-bidi", `[[environment]]
name = "uat"
labels = { team = "a\u202eb" } #!`, fails(`environment "uat"`, "labels.team", `"a\u202eb" holds a control character`)),
		env("label-value-unicode", `[[environment]]
name = "uat"
labels = { team = "équipe ünf" }`, loads),
		env("rule-unknown-key", `[[environment]]
name = "uat"
[environment.rules.access_log]
pth = "x" #!`, fails(`environment "uat"`, "rules.access_log.pth", `unknown key "pth" (did you mean "path"?)`)),
		env("access-log-combined", `[[environment]]
name = "uat"
[environment.rules.access_log]
format = "combined"`, loads),
		env("access-log-format-unknown", `[[environment]]
name = "uat"
[environment.rules.access_log]
path = ""
format = "apache" #!`, fails(`environment "uat"`, "rules.access_log.format", `"apache" is not an access log format: use "json" or "combined"`)),
		env("access-log-format-type", `[[environment]]
name = "uat"
[environment.rules.access_log]
format = 1 #!`, fails(`environment "uat"`, "rules.access_log.format", "must be a string")),
		env("rule-unknown", `[[environment]]
name = "uat"
[environment.rules.tracing] #!`, fails(`environment "uat"`, "rules.tracing", `unknown key "tracing"`)),
		env("single-table", "[environment] #!\nname = \"uat\"", fails("", "", "environment must be an array of tables: write [[environment]]")),
	}
}

func groupCases() []validationCase {
	grp := func(name, body string, want *wantError) validationCase {
		return validationCase{name: "env_group/" + name, toml: addGroup + body, want: want}
	}
	return []validationCase{
		grp("second-group", `[[env_group]]
name = "g2"
hostnames = ["Other.Example.COM.", "bücher.example"]
environments = ["test"]
`, loads),
		grp("no-hostnames", `[[env_group]] #!
name = "g2"
environments = ["test"]
`, fails(`env_group "g2"`, "hostnames", "needs at least one hostname")),
		grp("no-environments", `[[env_group]] #!
name = "g2"
hostnames = ["other.example.com"]
`, fails(`env_group "g2"`, "environments", "needs at least one environment")),
		grp("environment-undefined", `[[env_group]]
name = "g2"
hostnames = ["other.example.com"]
environments = ["test",
  "prod"] #!
`, fails(`env_group "g2"`, "environments[1]", `environment "prod" is not defined`)),
		grp("environment-twice", `[[env_group]]
name = "g2"
hostnames = ["other.example.com"]
environments = ["test", "test"] #!
`, fails(`env_group "g2"`, "environments[1]", "listed twice")),
		grp("hostname-port", `[[env_group]]
name = "g2"
hostnames = ["other.example.com:443"] #!
environments = ["test"]
`, fails(`env_group "g2"`, "hostnames[0]", "must not include a port")),
		grp("hostname-bare-wildcard", `[[env_group]]
name = "g2"
hostnames = ["*"] #!
environments = ["test"]
`, fails(`env_group "g2"`, "hostnames[0]", "wildcard")),
		grp("hostname-wildcard-public-suffix", `[[env_group]]
name = "g2"
hostnames = ["a.example.com",
  "*.com"] #!
environments = ["test"]
`, fails(`env_group "g2"`, "hostnames[1]", `"*.com" covers every name under the public suffix "com"`, "default_virtual_host")),
		// A suffix of the list's private part is its owner's (GitHub's
		// github.io): the owner serves its users' sites with a wildcard
		// certificate, which CAs issue and browsers accept.
		grp("hostname-wildcard-private-suffix", `[[env_group]]
name = "g2"
hostnames = ["*.github.io"]
environments = ["test"]
`, loads),
		grp("hostname-other-group", `[[env_group]]
name = "g2"
hostnames = ["TEST.example.com"] #!
environments = ["test"]
`, fails(`env_group "g2"`, "hostnames[0]", `"test.example.com" already belongs to env_group "test-group" at`, "10-base.toml:6")),
		grp("hostname-twice", `[[env_group]]
name = "g2"
hostnames = ["a.example.com", "A.example.com."] #!
environments = ["test"]
`, fails(`env_group "g2"`, "hostnames[1]", "listed twice")),
		grp("hostname-idn-other-group", `[[env_group]]
name = "g2"
hostnames = ["bücher.example"]
environments = ["test"]
[[env_group]]
name = "g3"
hostnames = ["xn--bcher-kva.example"] #!
environments = ["test"]
[[virtual_host]]
name = "g3"
cert_file = "../certs/test.pem"
key_file = "../certs/test.key"
`, fails(`env_group "g3"`, "hostnames[0]", `"xn--bcher-kva.example" already belongs to env_group "g2" at`, "20-case.toml:8")),
		grp("hostname-ideographic-stop-other-group", `[[env_group]]
name = "g2"
hostnames = ["test.example.com。"] #!
environments = ["test"]
`, fails(`env_group "g2"`, "hostnames[0]", `"test.example.com" already belongs to env_group "test-group" at`, "10-base.toml:6")),
		{name: "env_group/no-virtual-host", toml: `[[env_group]] #!
name = "g3"
hostnames = ["g3.example.com"]
environments = ["test"]
`, want: fails(`env_group "g3"`, "", `there is no virtual_host "g3"`)},
		{name: "env_group/duplicate", toml: `[[env_group]] 
name = "test-group" #!
hostnames = ["g3.example.com"]
environments = ["test"]
`, want: fails(`env_group "test-group"`, "name", "already defined at", "10-base.toml:4")},
		{name: "env_group/name-invalid", toml: `[[env_group]]
name = "-g2" #!
hostnames = ["g2.example.com"]
environments = ["test"]
`, want: fails(`env_group "-g2"`, "name", `"-g2" is not a valid name`)},
	}
}

// g2VirtualHost is env group "g2" (test.example.net, environment test)
// with its virtual host on the test certificate, the virtual host's table
// ending in body.
func g2VirtualHost(body string) string {
	return `[[env_group]]
name = "g2"
hostnames = ["test.example.net"]
environments = ["test"]

[[virtual_host]]
name = "g2"
cert_file = "../certs/test.pem"
key_file = "../certs/test.key"
` + body
}

func virtualHostCases() []validationCase {
	vh := func(name, body string, want *wantError) validationCase {
		return validationCase{name: "virtual_host/" + name, toml: g2VirtualHost(body), want: want}
	}
	return []validationCase{
		vh("tls-1.3-only", "min_tls = \"1.3\"\nmax_tls = \"1.3\"\n", loads),
		vh("legacy-allowed", "min_tls = \"1.0\"\nallow_legacy_tls = true\n", loads),
		vh("legacy-refused", "min_tls = \"1.1\" #!\n", fails(`virtual_host "g2"`, "min_tls", "allow_legacy_tls = true")),
		vh("version-unknown", "max_tls = \"1.4\" #!\n", fails(`virtual_host "g2"`, "max_tls", `"1.4" is not a TLS version`)),
		vh("min-above-max", "min_tls = \"1.3\" #!\nmax_tls = \"1.2\"\n", fails(`virtual_host "g2"`, "min_tls", "above max_tls")),
		vh("ciphers-good", "cipher_suites = [\"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256\", \"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256\"]\n", loads),
		vh("cipher-insecure", "cipher_suites = [\"TLS_RSA_WITH_RC4_128_SHA\"] #!\n", fails(`virtual_host "g2"`, "cipher_suites[0]", "is insecure")),
		vh("cipher-unknown", "cipher_suites = [\n  \"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256\",\n  \"TLS_FAST\", #!\n]\n", fails(`virtual_host "g2"`, "cipher_suites[1]", `unknown cipher suite "TLS_FAST"`)),
		vh("cipher-tls13", "cipher_suites = [\"TLS_AES_128_GCM_SHA256\"] #!\n", fails(`virtual_host "g2"`, "cipher_suites[0]", "TLS 1.3 suite")),
		// Only RSA suites for an ECDSA certificate: no TLS 1.2 handshake
		// can succeed, and without TLS 1.3 none at all.
		vh("ciphers-not-for-the-key", "max_tls = \"1.2\"\ncipher_suites = [\"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\"] #!\n", fails(`virtual_host "g2"`, "cipher_suites", "none of them can be used with the certificate's ECDSA key")),
		vh("ciphers-cbc-only", "cipher_suites = [\"TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA\"] #!\n", fails(`virtual_host "g2"`, "cipher_suites", "HTTP/2 over TLS 1.2")),
		vh("ciphers-aead-only-for-another-key", "cipher_suites = [\"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\", \"TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA\"] #!\n", fails(`virtual_host "g2"`, "cipher_suites", "HTTP/2 over TLS 1.2")),
		vh("ciphers-cbc-beside-aead", "cipher_suites = [\"TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA\", \"TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384\"]\n", loads),
		vh("ciphers-one-for-the-key", "max_tls = \"1.2\"\ncipher_suites = [\"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\", \"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256\"]\n", loads),
		vh("cipher-without-tls12", "min_tls = \"1.3\"\ncipher_suites = [\"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256\"] #!\n", fails(`virtual_host "g2"`, "cipher_suites", "min_tls is 1.3")),
		{name: "virtual_host/cert-missing", toml: `[[env_group]]
name = "g2"
hostnames = ["test.example.net"]
environments = ["test"]
[[virtual_host]] #!
name = "g2"
key_file = "../certs/test.key"
`, want: fails(`virtual_host "g2"`, "cert_file", "required")},
		{name: "virtual_host/cert-unreadable", toml: `[[env_group]]
name = "g2"
hostnames = ["test.example.net"]
environments = ["test"]
[[virtual_host]]
name = "g2"
cert_file = "../certs/nope.pem" #!
key_file = "../certs/test.key"
`, want: fails(`virtual_host "g2"`, "cert_file", "cannot read the certificate", "nope.pem")},
		vh("client-ca-not-pem", "client_ca_file = \"../certs/test.key\" #!\n", fails(`virtual_host "g2"`, "client_ca_file", "holds no PEM certificate")),
		vh("client-ca-good", "client_ca_file = \"../certs/test.pem\"\n", loads),
		vh("forward-client-cert", "client_ca_file = \"../certs/test.pem\"\nforward_client_cert = true\n", loads),
		vh("forward-client-cert-off-without-ca", "forward_client_cert = false\n", loads),
		vh("forward-client-cert-without-ca", "forward_client_cert = true #!\n", fails(`virtual_host "g2"`, "forward_client_cert", "needs client_ca_file", "no client certificate is asked for")),
		{name: "virtual_host/no-group", toml: `[[virtual_host]]
name = "lonely" #!
cert_file = "../certs/test.pem"
key_file = "../certs/test.key"
`, want: fails(`virtual_host "lonely"`, "name", `there is no env_group "lonely"`)},
		{name: "virtual_host/duplicate", toml: `[[virtual_host]]
name = "test-group" #!
cert_file = "../certs/test.pem"
key_file = "../certs/test.key"
`, want: fails(`virtual_host "test-group"`, "name", `"test-group" is already defined at`, "10-base.toml:9", "virtual_host names are unique")},
		{name: "virtual_host/name-invalid", toml: `[[virtual_host]]
name = "test group" #!
cert_file = "../certs/test.pem"
key_file = "../certs/test.key"
`, want: fails(`virtual_host "test group"`, "name", `"test group" is not a valid name`)},
	}
}

func upstreamCases() []validationCase {
	up := func(name, body string, want *wantError) validationCase {
		return validationCase{name: "upstream/" + name, toml: addUpstream + body, want: want}
	}
	raw := func(name, body string, want *wantError) validationCase {
		return validationCase{name: "upstream/" + name, toml: body, want: want}
	}
	return []validationCase{
		up("full", `balance = "hash"
hash_on = "header:X-User"
pass_host = "rewrite"
upstream_host = "Users.Internal:8080"
connect_timeout = "1s"
response_timeout = "5s"
retries = 0
max_idle_per_node = 0
[upstream.health.active]
path = "/healthz"
interval = "1s"
timeout = "500ms"
healthy = 1
unhealthy = 3
[upstream.health.passive]
failures = 1
eject = "10s"
`, loads),
		up("hash-cookie", "balance = \"hash\"\nhash_on = \"cookie:session\"\n", loads),
		up("hash-client-ip", "balance = \"hash\"\nhash_on = \"client_ip\"\n", loads),
		up("least-request", "balance = \"least_request\"\npass_host = \"node\"\n", loads),
		raw("no-nodes", "[[upstream]] #!\nname = \"extra\"\nenvironment = \"test\"\n", fails(`upstream "extra"`, "nodes", "at least one node")),
		raw("node-scheme", "[[upstream]]\nname = \"extra\"\nenvironment = \"test\"\nnodes = [{ url = \"ftp://10.0.0.1:21\" }] #!\n", fails(`upstream "extra"`, "nodes[0].url", "http:// or https://")),
		raw("node-no-scheme", "[[upstream]]\nname = \"extra\"\nenvironment = \"test\"\nnodes = [{ url = \"10.0.0.1:80\" }] #!\n", fails(`upstream "extra"`, "nodes[0].url")),
		raw("node-path", "[[upstream]]\nname = \"extra\"\nenvironment = \"test\"\nnodes = [\n  { url = \"http://10.0.0.1:80\" },\n  { url = \"http://10.0.0.2:80/v1\" }, #!\n]\n", fails(`upstream "extra"`, "nodes[1].url", "no path")),
		raw("node-query", "[[upstream]]\nname = \"extra\"\nenvironment = \"test\"\nnodes = [{ url = \"http://10.0.0.1:80?x=1\" }] #!\n", fails(`upstream "extra"`, "nodes[0].url", "query")),
		raw("node-credentials", "[[upstream]]\nname = \"extra\"\nenvironment = \"test\"\nnodes = [{ url = \"http://u:secret@10.0.0.1:80\" }] #!\n", fails(`upstream "extra"`, "nodes[0].url", "credentials")),
		raw("node-port", "[[upstream]]\nname = \"extra\"\nenvironment = \"test\"\nnodes = [{ url = \"http://10.0.0.1:0\" }] #!\n", fails(`upstream "extra"`, "nodes[0].url", "port")),
		// curl reads 127.1 as 127.0.0.1; Go's dialer looks it up as a name.
		raw("node-short-ipv4", "[[upstream]]\nname = \"extra\"\nenvironment = \"test\"\nnodes = [{ url = \"http://127.1:9001\" }] #!\n", fails(`upstream "extra"`, "nodes[0].url", `"127.1" is neither a hostname`)),
		// Go's dialer takes a zone, but a node URL must write it "%25eth0"
		// and the message said IPv6 addresses were not hostnames.
		raw("node-ipv6-zone", "[[upstream]]\nname = \"extra\"\nenvironment = \"test\"\nnodes = [{ url = \"http://[fe80::1%25eth0]:9001\" }] #!\n", fails(`upstream "extra"`, "nodes[0].url", `zone "%eth0"`, "not supported")),
		// 0.0.0.0 and :: are "every interface" to a listener; dialled, Linux
		// connects them to this machine, not to the backend meant.
		raw("node-unspecified-ipv4", "[[upstream]]\nname = \"extra\"\nenvironment = \"test\"\nnodes = [{ url = \"http://0.0.0.0:9001\" }] #!\n", fails(`upstream "extra"`, "nodes[0].url", `"0.0.0.0" is the unspecified address`)),
		raw("node-unspecified-ipv6", "[[upstream]]\nname = \"extra\"\nenvironment = \"test\"\nnodes = [{ url = \"http://[::]:9001\" }] #!\n", fails(`upstream "extra"`, "nodes[0].url", `"::" is the unspecified address`)),
		raw("node-multicast", "[[upstream]]\nname = \"extra\"\nenvironment = \"test\"\nnodes = [{ url = \"http://224.0.0.1:9001\" }] #!\n", fails(`upstream "extra"`, "nodes[0].url", `"224.0.0.1" is a multicast address`)),
		raw("node-multicast-ipv6", "[[upstream]]\nname = \"extra\"\nenvironment = \"test\"\nnodes = [{ url = \"http://[ff02::1]:9001\" }] #!\n", fails(`upstream "extra"`, "nodes[0].url", `"ff02::1" is a multicast address`)),
		raw("node-broadcast", "[[upstream]]\nname = \"extra\"\nenvironment = \"test\"\nnodes = [{ url = \"http://255.255.255.255:9001\" }] #!\n", fails(`upstream "extra"`, "nodes[0].url", `"255.255.255.255" is the broadcast address`)),
		raw("node-unspecified-mapped", "[[upstream]]\nname = \"extra\"\nenvironment = \"test\"\nnodes = [{ url = \"http://[::ffff:0.0.0.0]:9001\" }] #!\n", fails(`upstream "extra"`, "nodes[0].url", "unspecified address")),
		raw("node-ipv6", "[[upstream]]\nname = \"extra\"\nenvironment = \"test\"\nnodes = [{ url = \"http://[fd00::1]:9001\" }]\n", loads),
		raw("node-twice", "[[upstream]]\nname = \"extra\"\nenvironment = \"test\"\nnodes = [\n  { url = \"http://10.0.0.1\" },\n  { url = \"http://10.0.0.1:80/\" }, #!\n]\n", fails(`upstream "extra"`, "nodes[1].url", "already nodes[0]")),
		// A port is a number: 09001 is port 9001, the same node.
		raw("node-twice-port-spelling", "[[upstream]]\nname = \"extra\"\nenvironment = \"test\"\nnodes = [\n  { url = \"http://10.0.0.1:9001\" },\n  { url = \"http://10.0.0.1:09001\" }, #!\n]\n", fails(`upstream "extra"`, "nodes[1].url", "http://10.0.0.1:9001 is already nodes[0]")),
		raw("node-weight-zero", "[[upstream]]\nname = \"extra\"\nenvironment = \"test\"\nnodes = [{ url = \"http://10.0.0.1\", weight = 0 }] #!\n", fails(`upstream "extra"`, "nodes[0].weight", "out of range (1 to 1000)")),
		raw("node-weight-big", "[[upstream]]\nname = \"extra\"\nenvironment = \"test\"\n[[upstream.nodes]]\nurl = \"http://10.0.0.1\"\nweight = 1001 #!\n", fails(`upstream "extra"`, "nodes[0].weight", "out of range (1 to 1000)")),
		raw("node-unknown-key", "[[upstream]]\nname = \"extra\"\nenvironment = \"test\"\nnodes = [\n  { url = \"http://10.0.0.1\" },\n  { url = \"http://10.0.0.2\", wieght = 2 }, #!\n]\n", fails(`upstream "extra"`, "nodes[1].wieght", `did you mean "weight"`)),
		up("balance-unknown", "balance = \"random\" #!\n", fails(`upstream "extra"`, "balance", `"random" is not a balancer`)),
		up("hash-without-hash-on", "balance = \"hash\" #!\n", fails(`upstream "extra"`, "hash_on", "required with balance = \"hash\"")),
		up("hash-on-bad", "balance = \"hash\"\nhash_on = \"query:x\" #!\n", fails(`upstream "extra"`, "hash_on", `"query:x"`)),
		up("hash-on-bad-header", "balance = \"hash\"\nhash_on = \"header:\" #!\n", fails(`upstream "extra"`, "hash_on", "not a valid header name")),
		up("hash-on-hop-by-hop", "balance = \"hash\"\nhash_on = \"header:connection\" #!\n", fails(`upstream "extra"`, "hash_on", "never reaches the node")),
		up("hash-on-expect", "balance = \"hash\"\nhash_on = \"header:Expect\" #!\n", fails(`upstream "extra"`, "hash_on", "never reaches the node")),
		up("hash-on-proxy", "balance = \"hash\"\nhash_on = \"header:proxy\" #!\n", fails(`upstream "extra"`, "hash_on", "never reaches the node")),
		up("hash-on-underscore-dropped", "balance = \"hash\"\nhash_on = \"header:X_User\" #!\n", fails(`upstream "extra"`, "hash_on", "underscores_in_headers = false", "never reaches the node")),
		up("hash-on-real-ip", "balance = \"hash\"\nhash_on = \"header:X-Real-IP\" #!\n", fails(`upstream "extra"`, "hash_on", "never reaches the node", "client_ip")),
		up("hash-on-forwarded-port", "balance = \"hash\"\nhash_on = \"header:X-Forwarded-Port\" #!\n", fails(`upstream "extra"`, "hash_on", "never reaches the node")),
		up("hash-on-xff", "balance = \"hash\"\nhash_on = \"header:X-Forwarded-For\"\n", loads),
		up("hash-on-host", "balance = \"hash\"\nhash_on = \"header:host\"\n", loads),
		up("hash-on-without-hash", "hash_on = \"client_ip\" #!\n", fails(`upstream "extra"`, "hash_on", "only applies to balance = \"hash\"")),
		up("pass-host-unknown", "pass_host = \"keep\" #!\n", fails(`upstream "extra"`, "pass_host", `"keep" is not a mode`)),
		up("rewrite-without-host", "pass_host = \"rewrite\" #!\n", fails(`upstream "extra"`, "upstream_host", "required with pass_host = \"rewrite\"")),
		up("upstream-host-without-rewrite", "upstream_host = \"x.internal\" #!\n", fails(`upstream "extra"`, "upstream_host", "only applies to pass_host = \"rewrite\"")),
		// A Host header's port is digits (RFC 9110 4.2.1): "+80" went out as it was.
		up("upstream-host-port-sign", "pass_host = \"rewrite\"\nupstream_host = \"x.internal:+80\" #!\n", fails(`upstream "extra"`, "upstream_host", `port "+80" is not a number from 1 to 65535`)),
		up("upstream-host-bad", "pass_host = \"rewrite\"\nupstream_host = \"x y\" #!\n", fails(`upstream "extra"`, "upstream_host", "space")),
		up("connect-timeout-zero", "connect_timeout = \"0s\" #!\n", fails(`upstream "extra"`, "connect_timeout", "positive")),
		up("connect-timeout-sub-millisecond", "connect_timeout = \"1ns\" #!\n", fails(`upstream "extra"`, "connect_timeout", `"1ns" is shorter than 1ms`)),
		up("connect-timeout-millisecond", "connect_timeout = \"1ms\"\n", loads),
		up("response-timeout-sub-millisecond", "response_timeout = \"500us\" #!\n", fails(`upstream "extra"`, "response_timeout", `"500us" is shorter than 1ms`)),
		up("active-timeout-sub-millisecond", "[upstream.health.active]\ntimeout = \"1ns\" #!\n", fails(`upstream "extra"`, "health.active.timeout", `"1ns" is shorter than 1ms`)),
		up("passive-eject-sub-millisecond", "[upstream.health.passive]\neject = \"1ns\" #!\n", fails(`upstream "extra"`, "health.passive.eject", `"1ns" is shorter than 1ms`)),
		up("response-timeout-negative", "response_timeout = \"-1s\" #!\n", fails(`upstream "extra"`, "response_timeout", "positive")),
		up("retries-big", "retries = 11 #!\n", fails(`upstream "extra"`, "retries", "out of range (0 to 10)")),
		up("max-idle-negative", "max_idle_per_node = -1 #!\n", fails(`upstream "extra"`, "max_idle_per_node", "out of range (0 to 100000)")),
		up("active-path", "[upstream.health.active]\npath = \"healthz\" #!\n", fails(`upstream "extra"`, "health.active.path", "must start with \"/\"")),
		// The path is the probe's request line as written: a space in it
		// failed every probe, so every node was taken out.
		up("active-path-space", "[upstream.health.active]\npath = \"/health z\" #!\n", fails(`upstream "extra"`, "health.active.path", `percent-encoded: "/health%20z"`)),
		up("active-path-crlf", "[upstream.health.active]\npath = \"/h\\r\\nX: 1\" #!\n", fails(`upstream "extra"`, "health.active.path", "percent-encoded")),
		up("active-path-fragment", "[upstream.health.active]\npath = \"/h#x\" #!\n", fails(`upstream "extra"`, "health.active.path", "fragment")),
		up("active-path-bad-escape", "[upstream.health.active]\npath = \"/h%zz\" #!\n", fails(`upstream "extra"`, "health.active.path", "invalid percent-encoding")),
		up("active-path-query", "[upstream.health.active]\npath = \"/h%20z?full=1&x=/a?b\"\n", loads),
		up("active-interval", "[upstream.health.active]\ninterval = \"0s\" #!\n", fails(`upstream "extra"`, "health.active.interval", "positive")),
		// Probes run back to back on a new connection each: "1ns" kept
		// every node of the upstream busy answering them.
		up("active-interval-tiny", "[upstream.health.active]\ninterval = \"1ms\" #!\n", fails(`upstream "extra"`, "health.active.interval", `"1ms" is shorter than "10ms"`)),
		up("active-interval-least", "[upstream.health.active]\ninterval = \"10ms\"\n", loads),
		up("active-healthy", "[upstream.health.active]\nhealthy = 0 #!\n", fails(`upstream "extra"`, "health.active.healthy", "out of range")),
		up("active-unhealthy", "[upstream.health.active]\nunhealthy = 0 #!\n", fails(`upstream "extra"`, "health.active.unhealthy", "out of range")),
		up("passive-failures", "[upstream.health.passive]\nfailures = 0 #!\n", fails(`upstream "extra"`, "health.passive.failures", "out of range")),
		up("passive-eject", "[upstream.health.passive]\neject = \"0s\" #!\n", fails(`upstream "extra"`, "health.passive.eject", "positive")),
		up("passive-eject-huge", "[upstream.health.passive]\neject = \"2562047h\" #!\n", fails(`upstream "extra"`, "health.passive.eject", "longer than 8760h")),
		up("response-timeout-huge", "response_timeout = \"9000000h\" #!\n", fails(`upstream "extra"`, "response_timeout", `invalid duration "9000000h"`, `at most "8760h"`)),
		up("health-unknown", "[upstream.health.activ] #!\n", fails(`upstream "extra"`, "health.activ", `did you mean "active"`)),
		raw("environment-missing", "[[upstream]] #!\nname = \"extra\"\nnodes = [{ url = \"http://10.0.0.1\" }]\n", fails(`upstream "extra"`, "environment", "required")),
		raw("environment-undefined", "[[upstream]]\nname = \"extra\"\nenvironment = \"uat\" #!\nnodes = [{ url = \"http://10.0.0.1\" }]\n", fails(`upstream "extra"`, "environment", `environment "uat" is not defined`)),
		raw("duplicate-in-environment", "[[upstream]]\nname = \"pool\" #!\nenvironment = \"test\"\nnodes = [{ url = \"http://10.0.0.1\" }]\n", fails(`upstream "pool"`, "name", `already defined in environment "test" at`, "10-base.toml:14")),
		raw("name-invalid", "[[upstream]]\nname = \"pool!\" #!\nenvironment = \"test\"\nnodes = [{ url = \"http://10.0.0.1\" }]\n", fails(`upstream "pool!"`, "name", `"pool!" is not a valid name`)),
		raw("name-invalid-environment-undefined", "[[upstream]]\nname = \"pool!\" #!\nenvironment = \"uat\"\nnodes = [{ url = \"http://10.0.0.1\" }]\n", fails(`upstream "pool!"`, "name", `"pool!" is not a valid name`)),
		raw("same-name-other-environment", "[[environment]]\nname = \"uat\"\n[[upstream]]\nname = \"pool\"\nenvironment = \"uat\"\nnodes = [{ url = \"http://10.0.0.1\" }]\n", loads),
	}
}

// encodedMsg is why a base path holds no percent-encoding.
const encodedMsg = "base paths are matched against the decoded request path: write the character itself, not its %-encoding"

func proxyCases() []validationCase {
	px := func(name, body string, want *wantError) validationCase {
		return validationCase{name: "proxy/" + name, toml: addProxy + body, want: want}
	}
	// bp is a proxy with base_path p, on the line the case expects its error.
	bp := func(name, p string, want *wantError) validationCase {
		return validationCase{name: "proxy/base-path-" + name, want: want,
			toml: "[[proxy]]\nname = \"orders\"\nenvironment = \"test\"\nbase_path = \"" + p + "\" #!\nupstream = \"pool\"\n"}
	}
	return []validationCase{
		px("target", "target = \"http://127.0.0.1:9001/v1/\"\n", loads),
		px("target-default-port", "target = \"https://orders.internal\"\n", loads),
		px("upstream-target-path", "upstream = \"pool\"\ntarget_path = \"/v2\"\n", loads),
		px("max-in-flight", "upstream = \"pool\"\nmax_in_flight = 3\n", loads),
		px("max-in-flight-above-workers", "upstream = \"pool\"\nmax_in_flight = 100000\n", loads),
		px("max-in-flight-zero", "upstream = \"pool\"\nmax_in_flight = 0 #!\n", fails(`proxy "orders"`, "max_in_flight", "0 is out of range (1 to 100000)")),
		px("max-in-flight-string", "upstream = \"pool\"\nmax_in_flight = \"4\" #!\n", fails(`proxy "orders"`, "max_in_flight", "must be an integer, not a string")),
		px("max-in-flight-typo", "upstream = \"pool\"\nmax_inflight = 4 #!\n", fails(`proxy "orders"`, "max_inflight", `unknown key "max_inflight"`)),
		px("upstream-undefined", "upstream = \"uat-pool\" #!\n", fails(`proxy "orders"`, "upstream", `"uat-pool" is not defined in environment "test"`)),
		px("both", "upstream = \"pool\"\ntarget = \"http://127.0.0.1:9001\" #!\n", fails(`proxy "orders"`, "target", "not both")),
		{name: "proxy/neither", toml: "[[proxy]] #!\nname = \"orders\"\nenvironment = \"test\"\nbase_path = \"/orders\"\n",
			want: fails(`proxy "orders"`, "", "needs upstream")},
		px("target-relative", "target = \"/v1\" #!\n", fails(`proxy "orders"`, "target", "http:// or https://")),
		px("target-query", "target = \"http://127.0.0.1:9001/v1?x=1\" #!\n", fails(`proxy "orders"`, "target", "query")),
		px("target-fragment", "target = \"http://127.0.0.1:9001/v1#x\" #!\n", fails(`proxy "orders"`, "target", "fragment")),
		px("target-dotdot", "target = \"http://127.0.0.1:9001/v1/../admin\" #!\n", fails(`proxy "orders"`, "target", `".." segments`)),
		px("target-path-with-target", "target = \"http://127.0.0.1:9001\"\ntarget_path = \"/v1\" #!\n", fails(`proxy "orders"`, "target_path", "only applies with upstream")),
		px("target-path-relative", "upstream = \"pool\"\ntarget_path = \"v1\" #!\n", fails(`proxy "orders"`, "target_path", "must start with")),
		// target_path goes into the request line as written: what a
		// request line cannot carry failed every request at run time.
		px("target-path-space", "upstream = \"pool\"\ntarget_path = \"/a b\" #!\n", fails(`proxy "orders"`, "target_path", `"/a b"`, `percent-encoded: "/a%20b"`)),
		px("target-path-crlf", "upstream = \"pool\"\ntarget_path = \"/v1 HTTP/1.1\\r\\nX-Injected: 1\" #!\n", fails(`proxy "orders"`, "target_path", "percent-encoded")),
		px("target-path-non-ascii", "upstream = \"pool\"\ntarget_path = \"/bücher\" #!\n", fails(`proxy "orders"`, "target_path", `percent-encoded: "/b%C3%BCcher"`)),
		px("target-path-bad-escape", "upstream = \"pool\"\ntarget_path = \"/a%zz\" #!\n", fails(`proxy "orders"`, "target_path", "invalid percent-encoding")),
		px("target-path-escaped", "upstream = \"pool\"\ntarget_path = \"/b%C3%BCcher/a%20b/~x_y-z.1/!$&'()*+,;=:@\"\n", loads),
		bp("relative", "orders", fails(`proxy "orders"`, "base_path", `"orders" must start with "/"`)),
		bp("plain-dot", ".", fails(`proxy "orders"`, "base_path", `"." must start with "/"`)),
		bp("dot", "/.", fails(`proxy "orders"`, "base_path", `"/." must not contain "." or ".." segments`)),
		bp("inner-dot", "/a/./b", fails(`proxy "orders"`, "base_path", `"." or ".." segments`)),
		bp("trailing-dot", "/a/.", fails(`proxy "orders"`, "base_path", `"." or ".." segments`)),
		bp("dotdot", "/a/../b", fails(`proxy "orders"`, "base_path", `".." segments`)),
		bp("double-slash", "/a//b", fails(`proxy "orders"`, "base_path", `"/a//b" contains "//"`)),
		bp("trailing-double-slash", "/a//", fails(`proxy "orders"`, "base_path", `contains "//"`)),
		bp("query", "/a?b=1", fails(`proxy "orders"`, "base_path", "query")),
		bp("control", "/a\\tb", fails(`proxy "orders"`, "base_path", "control character")),
		bp("encoded-space", "/a%20b", fails(`proxy "orders"`, "base_path", `"/a%20b" contains "%"`, encodedMsg)),
		bp("encoded-slash", "/a%2Fb", fails(`proxy "orders"`, "base_path", `"/a%2Fb" contains "%"`, encodedMsg)),
		bp("encoded-letter", "/%75sers", fails(`proxy "orders"`, "base_path", `"/%75sers" contains "%"`, encodedMsg)),
		bp("encoded-dot", "/a/%2e", fails(`proxy "orders"`, "base_path", encodedMsg)),
		bp("bad-encoding", "/a%zz", fails(`proxy "orders"`, "base_path", encodedMsg)),
		bp("root", "/", loads),
		bp("trailing-slash", "/orders/", loads),
		bp("space", "/a b", loads),
		bp("non-ascii", "/bücher", loads),
		bp("dots-in-segment", "/.well-known/v1.2", loads),
		{name: "proxy/base-path-missing", toml: "[[proxy]] #!\nname = \"orders\"\nenvironment = \"test\"\nupstream = \"pool\"\n",
			want: fails(`proxy "orders"`, "base_path", "required")},
		{name: "proxy/base-path-duplicate-in-env", toml: "[[proxy]]\nname = \"orders\"\nenvironment = \"test\"\nbase_path = \"/users/\" #!\nupstream = \"pool\"\n",
			want: fails(`proxy "orders"`, "base_path", `"/users" is already served by proxy "users" in environment "test" at`, "10-base.toml:22")},
		{name: "proxy/base-path-duplicate-in-group", toml: `[[environment]]
name = "uat"
[[env_group]]
name = "test-group-2"
hostnames = ["uat.example.com"]
environments = ["uat"]
[[virtual_host]]
name = "test-group-2"
cert_file = "../certs/test.pem"
key_file = "../certs/test.key"
[[proxy]]
name = "users-uat"
environment = "uat"
base_path = "/users" #!
target = "http://127.0.0.1:9001"
[[env_group]]
name = "both"
hostnames = ["both.example.com"]
environments = ["test", "uat"]
[[virtual_host]]
name = "both"
cert_file = "../certs/test.pem"
key_file = "../certs/test.key"
`, want: fails(`proxy "users-uat"`, "base_path", `also served by proxy "users" of environment "test"`, "10-base.toml:22", `env_group "both"`)},
		{name: "proxy/same-base-path-separate-groups", toml: `[[environment]]
name = "uat"
[[env_group]]
name = "uat-group"
hostnames = ["uat.example.com"]
environments = ["uat"]
[[virtual_host]]
name = "uat-group"
cert_file = "../certs/test.pem"
key_file = "../certs/test.key"
[[proxy]]
name = "users"
environment = "uat"
base_path = "/users"
target = "http://127.0.0.1:9001"
`},
		{name: "proxy/duplicate-name", toml: "[[proxy]]\nname = \"users\" #!\nenvironment = \"test\"\nbase_path = \"/u2\"\nupstream = \"pool\"\n",
			want: fails(`proxy "users"`, "name", `already defined in environment "test" at`, "10-base.toml:19")},
		{name: "proxy/environment-undefined", toml: "[[proxy]]\nname = \"orders\"\nenvironment = \"uat\" #!\nbase_path = \"/orders\"\ntarget = \"http://127.0.0.1:9001\"\n",
			want: fails(`proxy "orders"`, "environment", `environment "uat" is not defined`)},
		{name: "proxy/upstream-in-other-environment", toml: "[[environment]]\nname = \"uat\"\n[[proxy]]\nname = \"users\"\nenvironment = \"uat\"\nbase_path = \"/users\"\nupstream = \"pool\" #!\n",
			want: fails(`proxy "users"`, "upstream", `"pool" is not defined in environment "uat"`, `defined in environment "test"`)},
		{name: "proxy/name-invalid", toml: "[[proxy]]\nname = \"users/v2\" #!\nenvironment = \"test\"\nbase_path = \"/u2\"\nupstream = \"pool\"\n",
			want: fails(`proxy "users/v2"`, "name", `"users/v2" is not a valid name`)},
		{name: "proxy/name-missing", toml: "[[proxy]] #!\nenvironment = \"test\"\nbase_path = \"/u2\"\nupstream = \"pool\"\n",
			want: fails(`proxy ""`, "name", "required")},
		{name: "proxy/name-wrong-type", toml: "[[proxy]]\nname = 7 #!\nenvironment = \"test\"\nbase_path = \"/orders\"\nupstream = \"pool\"\n",
			want: fails(`proxy ""`, "name", "must be a string, not an integer")},
	}
}

func topLevelCases() []validationCase {
	return []validationCase{
		{name: "top/unknown-table", toml: "[[proxies]] #!\nname = \"x\"\n", want: fails("", "", `unknown key "proxies" at the top level`, `did you mean "proxy"`)},
		{name: "top/syntax", toml: "[[proxy]]\nname = \"x\"\nbase_path = /x #!\n", want: fails("", "", "invalid TOML")},
	}
}

func TestValidation(t *testing.T) {
	var cases []validationCase
	cases = append(cases, serverCases()...)
	cases = append(cases, environmentCases()...)
	cases = append(cases, groupCases()...)
	cases = append(cases, virtualHostCases()...)
	cases = append(cases, upstreamCases()...)
	cases = append(cases, proxyCases()...)
	cases = append(cases, topLevelCases()...)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			file := tc.file
			if file == "" {
				file = "20-case.toml"
			}
			dir := setupDir(t, map[string]string{file: tc.toml})
			_, errs := loadErrors(t, dir)
			if tc.want == nil {
				require.Empty(t, errs, "want a clean load")
				return
			}
			w := tc.want
			require.NotEmpty(t, errs, "want an error of %q, field %q, holding %q", w.object, w.field, w.msg)
			e, ok := findErrorOf(errs, w.object, w.field, w.msg...)
			require.True(t, ok, "no error of object %q, field %q holds all of %q; got:\n%s", w.object, w.field, w.msg, describeErrors(errs))
			assert.Equal(t, filepath.Join(dir, file), e.Pos.File, "file of %v", e)
			want := markerLine(tc.toml)
			require.NotZero(t, want, "test case has no #! marker")
			assert.Equal(t, want, e.Pos.Line, "line of %v", e)
		})
	}
}

func TestValidNameMatchesTheDocumentedPattern(t *testing.T) {
	re := regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._-]{0,62}$`)
	for _, name := range []string{"", "a", "A9", "user-service", "v1.2_x", "-x", ".x", "_x", "a b", "a/b", "é",
		strings.Repeat("a", 63), strings.Repeat("a", 64), "x~", "9-"} {
		assert.Equal(t, re.MatchString(name), validName(name), "%q", name)
	}
}

// TestInvalidNameIsOneError: an invalid name is reported once, not again
// as a dangling reference of the object carrying it.
func TestInvalidNameIsOneError(t *testing.T) {
	for _, tc := range []struct {
		kind, toml, object string
	}{
		{"environment", "[[environment]]\nname = \"a b\"\n", `environment "a b"`},
		{"env_group", "[[env_group]]\nname = \"a b\"\nhostnames = [\"g.example.com\"]\nenvironments = [\"test\"]\n", `env_group "a b"`},
		{"virtual_host", "[[virtual_host]]\nname = \"a b\"\ncert_file = \"../certs/test.pem\"\nkey_file = \"../certs/test.key\"\n", `virtual_host "a b"`},
		{"upstream", "[[upstream]]\nname = \"a b\"\nenvironment = \"test\"\nnodes = [{ url = \"http://10.0.0.1\" }]\n", `upstream "a b"`},
		{"proxy", "[[proxy]]\nname = \"a b\"\nenvironment = \"test\"\nbase_path = \"/ab\"\nupstream = \"pool\"\n", `proxy "a b"`},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			dir := setupDir(t, map[string]string{"20-case.toml": tc.toml})
			_, errs := loadErrors(t, dir)
			require.Len(t, errs, 1, "%s", describeErrors(errs))
			assert.Equal(t, tc.object, errs[0].Object)
			assert.Equal(t, "name", errs[0].Field)
			assert.Equal(t, Pos{filepath.Join(dir, "20-case.toml"), 2}, errs[0].Pos)
			assert.Contains(t, errs[0].Msg, `"a b" is not a valid name`)
		})
	}
}

func TestCleanBasePath(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"/", "/"},
		{"/users", "/users"},
		{"/users/", "/users"},
		{"/a/b/", "/a/b"},
		{"/a b", "/a b"},
		{"/bücher/", "/bücher"},
		{"/.well-known", "/.well-known"},
	} {
		got, err := cleanBasePath(tc.in)
		require.NoError(t, err, "%q", tc.in)
		assert.Equal(t, tc.want, got, "%q", tc.in)
	}
	for _, in := range []string{"", ".", "users", "/.", "/..", "/a/./b", "/a/..", "//", "/a//b", "/a%20b", "/a%2Fb", "/%75sers", "/%", "/a?b", "/a#b", "/a\x00b", "/a\nb", "/a\u0085b", "/a;b", "/users;", "/a;v=1/b", `/a\b`, `/a\`} {
		_, err := cleanBasePath(in)
		assert.Error(t, err, "%q", in)
	}
}

func TestLoaderStoresCleanBasePaths(t *testing.T) {
	dir := setupDir(t, map[string]string{"20-x.toml": strings.Replace(addProxy, `"/orders"`, `"/orders/"`, 1) + "upstream = \"pool\"\n"})
	cfg, err := Load(dir)
	require.NoError(t, err)
	require.Len(t, cfg.Proxies, 2)
	assert.Equal(t, "/orders", cfg.Proxies[1].BasePath, "the trailing slash is dropped")
}

// An environment that leaves max_body_bytes out takes the server's: a bad
// server value is the server's one error, not also one per environment
// telling the operator to remove a key they never wrote.
func TestServerMaxBodyBytesErrorIsNotRepeatedPerEnvironment(t *testing.T) {
	dir := setupDir(t, map[string]string{
		"00-server.toml": baseServer + "max_body_bytes = 0\n",
		"20-uat.toml":    "[[environment]]\nname = \"uat\"\n",
	})
	_, errs := loadErrors(t, dir)
	var fields []string
	for _, e := range errs {
		if e.Field == "max_body_bytes" {
			fields = append(fields, e.Object)
		}
	}
	assert.Equal(t, []string{"server"}, fields, "errors:\n%s", describeErrors(errs))
}

// With TLS 1.3 on, suites unusable with the certificate's key leave TLS 1.3
// clients served: a warning, not an error.
func TestCipherSuitesNotForTheKeyWithTLS13IsAWarning(t *testing.T) {
	dir := setupDir(t, map[string]string{"20-g2.toml": g2VirtualHost(`cipher_suites = ["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"]` + "\n")})
	cfg, errs := loadErrors(t, dir)
	require.Empty(t, errs, describeErrors(errs))
	_, ok := findErrorOf(cfg.Warnings, `virtual_host "g2"`, "cipher_suites", "ECDSA key", "TLS 1.2 clients")
	assert.True(t, ok, "warnings:\n%s", describeErrors(cfg.Warnings))
}

// An environment that leaves reject_delay out takes it from queue_timeout:
// a negative queue_timeout is queue_timeout's one error, not also one of
// reject_delay, a key the file never wrote, on the environment's first line.
func TestNegativeQueueTimeoutIsNotAlsoARejectDelayError(t *testing.T) {
	dir := setupDir(t, map[string]string{
		"20-uat.toml": "[[environment]]\nname = \"uat\"\nqueue_timeout = \"-1s\"\n",
	})
	_, errs := loadErrors(t, dir)
	require.Len(t, errs, 1, "errors:\n%s", describeErrors(errs))
	assert.Equal(t, "queue_timeout", errs[0].Field)
	assert.Equal(t, 3, errs[0].Pos.Line)
}

// TestNodeWrittenAsAStringIsOneError: nodes = ["https://..."] (a URL
// where a table is expected) is one error, saying how to write a node;
// the url it then lacks is not a second one.
func TestNodeWrittenAsAStringIsOneError(t *testing.T) {
	dir := setupDir(t, map[string]string{"20-case.toml": "[[upstream]]\nname = \"extra\"\nenvironment = \"test\"\nnodes = [\"https://10.0.0.5:443\"]\n"})
	_, errs := loadErrors(t, dir)
	require.Len(t, errs, 1, "%s", describeErrors(errs))
	e := errs[0]
	assert.Equal(t, "nodes[0]", e.Field)
	assert.Equal(t, 4, e.Pos.Line)
	assert.Contains(t, e.Msg, `must be a table like { url = "http://10.0.0.5:8080" }, not a string`)
}

// TestEnvironmentCountIsBounded: each environment is a runtime of its own
// (worker pool, metrics, logs) whether or not a group serves it: 63,704
// empty [[environment]] tables, one 1.9 MB file any team may write, took
// edged serve to 906 MB. Past MaxEnvironments (Apigee allows 85 per
// organization) the configuration is refused, with one error.
func TestEnvironmentCountIsBounded(t *testing.T) {
	var b strings.Builder
	for i := 1; i < MaxEnvironments; i++ { // "test" is the base's
		fmt.Fprintf(&b, "[[environment]]\nname = \"e%d\"\n", i)
	}
	dir := setupDir(t, map[string]string{"20-envs.toml": b.String()})
	_, errs := loadErrors(t, dir)
	require.Empty(t, errs, "%d environments: at the limit", MaxEnvironments)

	fmt.Fprintf(&b, "[[environment]]\nname = \"one-more\"\n")
	dir = setupDir(t, map[string]string{"20-envs.toml": b.String()})
	_, errs = loadErrors(t, dir)
	require.Len(t, errs, 1, "%s", describeErrors(errs))
	assert.Equal(t, `environment "one-more"`, errs[0].Object)
	assert.Equal(t, 2*MaxEnvironments-1, errs[0].Pos.Line)
	assert.Contains(t, errs[0].Msg, fmt.Sprintf("%d environments, more than the %d", MaxEnvironments+1, MaxEnvironments))
}

// TestRouteCountIsBounded: each env group routes every proxy of each of
// its environments in a table of its own, so an environment's proxies
// count once per group serving it. Without a bound, 1,600 groups serving
// one environment of 20,000 proxies (1.7 MB of files) took edged check
// 22 s and 3.4 GB, and 8 MiB of files could ask for billions of routes.
// Past maxRoutes the configuration is refused with one error, on the
// environment of the group that goes past it, and the groups past it are
// not checked (each of these would report its base path served twice).
func TestRouteCountIsBounded(t *testing.T) {
	old := maxRoutes
	t.Cleanup(func() { maxRoutes = old })
	const proxies = 10
	config := func(groups int) string {
		var b strings.Builder
		b.WriteString("[[environment]]\nname = \"e\"\n[[upstream]]\nname = \"u\"\nenvironment = \"e\"\nnodes = [{ url = \"http://127.0.0.1:9001\" }]\n")
		for i := range proxies {
			path := fmt.Sprintf("/p%d", i)
			if i == 0 {
				path = "/users" // as test's proxy "users"
			}
			fmt.Fprintf(&b, "[[proxy]]\nname = \"p%d\"\nenvironment = \"e\"\nbase_path = %q\nupstream = \"u\"\n", i, path)
		}
		for i := range groups {
			fmt.Fprintf(&b, "[[env_group]]\nname = \"g%d\"\nhostnames = [\"g%d.test.example.com\"]\nenvironments = [\"e\", \"test\"]\n", i, i)
			fmt.Fprintf(&b, "[[virtual_host]]\nname = \"g%d\"\ncert_file = \"../certs/test.pem\"\nkey_file = \"../certs/test.key\"\n", i)
		}
		return b.String()
	}
	const served = "is also served by proxy"
	// The base's group routes test's one proxy; each group here e's ten
	// and test's one.
	maxRoutes = 1 + 5*(proxies+1)
	dir := setupDir(t, map[string]string{"20-e.toml": config(5)})
	_, errs := loadErrors(t, dir)
	require.Len(t, errs, 5, "at the limit, every group is checked: %s", describeErrors(errs))
	for _, e := range errs {
		require.Contains(t, e.Msg, served, describeErrors(errs))
	}

	dir = setupDir(t, map[string]string{"20-e.toml": config(7)})
	_, errs = loadErrors(t, dir)
	e, ok := findErrorOf(errs, `env_group "g5"`, "environments[0]", fmt.Sprintf("%d routes, more than the %d", 1+7*(proxies+1), maxRoutes))
	require.True(t, ok, "%s", describeErrors(errs))
	assert.Equal(t, filepath.Join(dir, "20-e.toml"), e.Pos.File)
	assert.Equal(t, 6+5*proxies+8*5+4, e.Pos.Line, "the line of g5's environments")
	assert.Contains(t, e.Msg, `environment "e"'s 10 proxies`)
	require.Len(t, errs, 6, "the limit's error and the 5 groups before it: %s", describeErrors(errs))
}

// TestNodeCountIsBounded: each node of an [[upstream]] is a runtime of
// its own in every environment listing it (a health checker, a probe's
// connection each interval, an idle pool): 260,000 nodes with 10 ms
// checks, within the 8 MiB of all files, took 1.2 GB and ran the process
// out of file descriptors. Past MaxNodes, counted over every upstream of
// every environment, the configuration is refused with one error, at the
// first node past it.
func TestNodeCountIsBounded(t *testing.T) {
	upstream := func(name, env string, first, n int) string {
		var b strings.Builder
		fmt.Fprintf(&b, "[[upstream]]\nname = %q\nenvironment = %q\nnodes = [\n", name, env)
		for i := first; i < first+n; i++ {
			fmt.Fprintf(&b, "  { url = \"http://10.%d.%d.%d:8080\" },\n", i>>16&255, i>>8&255, i&255)
		}
		b.WriteString("]\n")
		return b.String()
	}
	// The base's upstream has one node; two environments share the rest.
	half := (MaxNodes - 1) / 2
	files := map[string]string{
		"20-uat.toml": "[[environment]]\nname = \"uat\"\n" + upstream("a", "uat", 0, half),
		"30-b.toml":   upstream("b", "test", 0, MaxNodes-1-half),
	}
	dir := setupDir(t, files)
	_, errs := loadErrors(t, dir)
	require.Empty(t, errs, "%d nodes: at the limit: %s", MaxNodes, describeErrors(errs))

	files["30-b.toml"] = upstream("b", "test", 0, MaxNodes-half)
	dir = setupDir(t, files)
	_, errs = loadErrors(t, dir)
	require.Len(t, errs, 1, "%s", describeErrors(errs))
	e := errs[0]
	assert.Equal(t, filepath.Join(dir, "30-b.toml"), e.Pos.File)
	assert.Equal(t, `upstream "b"`, e.Object)
	last := MaxNodes - 1 - half
	assert.Equal(t, fmt.Sprintf("nodes[%d]", last), e.Field)
	assert.Equal(t, 5+last, e.Pos.Line, "the line of the first node past the limit")
	assert.Contains(t, e.Msg, fmt.Sprintf("%d nodes, more than the %d", MaxNodes+1, MaxNodes))
}

// TestProxyTargetsCountAsNodes: a proxy's target is a one-node upstream,
// a node runtime of its own (its idle pool and reaper, about 4 KiB before
// any request), and counts toward MaxNodes: 10,001 proxies with targets
// loaded with no error, where 10,001 nodes of [[upstream]] tables are
// refused.
func TestProxyTargetsCountAsNodes(t *testing.T) {
	proxies := func(n int) string {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "[[proxy]]\nname = \"p%d\"\nenvironment = \"test\"\nbase_path = \"/p%d\"\ntarget = \"http://127.0.0.1:%d\"\n", i, i, 10000+i)
		}
		return b.String()
	}
	// The base's upstream has one node.
	files := map[string]string{"30-p.toml": proxies(MaxNodes - 1)}
	_, errs := loadErrors(t, setupDir(t, files))
	require.Empty(t, errs, "%d nodes: at the limit: %s", MaxNodes, describeErrors(errs))

	files["30-p.toml"] = proxies(MaxNodes)
	dir := setupDir(t, files)
	_, errs = loadErrors(t, dir)
	require.Len(t, errs, 1, "%s", describeErrors(errs))
	e := errs[0]
	assert.Equal(t, filepath.Join(dir, "30-p.toml"), e.Pos.File)
	assert.Equal(t, fmt.Sprintf("proxy %q", fmt.Sprintf("p%d", MaxNodes-1)), e.Object)
	assert.Equal(t, "target", e.Field)
	assert.Equal(t, 5*(MaxNodes-1)+5, e.Pos.Line)
	assert.Contains(t, e.Msg, fmt.Sprintf("%d nodes, more than the %d", MaxNodes+1, MaxNodes))
}

// TestIPHostnameOutsideTheDefaultVirtualHostWarns: clients send no SNI
// for an IP address (RFC 6066), so a handshake for one gets the default
// virtual host, and a request whose Host is another group's is answered
// 421: a group's IP address is reached over TLS only when that group is
// default_virtual_host. Loaded without a word, such a group answered no
// https request for its address.
func TestIPHostnameOutsideTheDefaultVirtualHostWarns(t *testing.T) {
	group := strings.Replace(g2VirtualHost(""), `hostnames = ["test.example.net"]`, "hostnames = [\n  \"test.example.net\",\n  \"10.0.0.5\",\n]", 1)
	dir := setupDir(t, map[string]string{"20-g2.toml": group})
	cfg, errs := loadErrors(t, dir)
	require.Empty(t, errs, describeErrors(errs))
	w, ok := findErrorOf(cfg.Warnings, `env_group "g2"`, "hostnames[1]", `"10.0.0.5" is an IP address`, "no SNI", "421", `default_virtual_host = "g2"`)
	require.True(t, ok, "warnings:\n%s", describeErrors(cfg.Warnings))
	assert.Equal(t, 5, w.Pos.Line)

	// As the default virtual host's, it is served.
	dir = setupDir(t, map[string]string{"00-server.toml": baseServer + "default_virtual_host = \"g2\"\n", "20-g2.toml": group})
	cfg, errs = loadErrors(t, dir)
	require.Empty(t, errs, describeErrors(errs))
	_, ok = findError(cfg.Warnings, "is an IP address")
	assert.False(t, ok, "warnings:\n%s", describeErrors(cfg.Warnings))
}

// upstream_host is the Host header sent to the nodes: an IPv6 address is
// bracketed there, with or without a port (RFC 9110 7.2, RFC 3986
// 3.2.2), as pass_host = "node" sends "[::1]" for http://[::1]:80. One
// without a port, "[::1]", was refused as "not a host or host:port".
func TestUpstreamHostIPv6Literal(t *testing.T) {
	for in, want := range map[string]string{
		"[::1]":                 "[::1]",
		"[::1]:8080":            "[::1]:8080",
		"[0:0::1]":              "[::1]",
		"[::1]:08080":           "[::1]:8080",
		"[2001:DB8::1]":         "[2001:db8::1]",
		"[::ffff:127.0.0.1]":    "127.0.0.1",
		"[::ffff:127.0.0.1]:80": "127.0.0.1:80",
		"127.0.0.1":             "127.0.0.1",
		"Users.Internal:8080":   "users.internal:8080",
	} {
		t.Run(in, func(t *testing.T) {
			dir := setupDir(t, map[string]string{"20-case.toml": addUpstream + "pass_host = \"rewrite\"\nupstream_host = \"" + in + "\"\n"})
			cfg, errs := loadErrors(t, dir)
			require.Empty(t, errs, describeErrors(errs))
			var got []string
			for _, u := range cfg.Upstreams {
				if u.Name == "extra" {
					got = append(got, u.UpstreamHost)
				}
			}
			assert.Equal(t, []string{want}, got)
		})
	}
	for in, msg := range map[string]string{
		"::1":               `write an IPv6 address in brackets: "[::1]"`,
		"[::1":              "is not a host or host:port",
		"[::1]x":            "is not a host or host:port",
		"[::1]:":            `port "" is not a number`,
		"[fe80::1%eth0]":    "an IPv6 zone",
		"[fe80::1%eth0]:80": "an IPv6 zone",
	} {
		t.Run(in, func(t *testing.T) {
			dir := setupDir(t, map[string]string{"20-case.toml": addUpstream + "pass_host = \"rewrite\"\nupstream_host = \"" + in + "\" #!\n"})
			_, errs := loadErrors(t, dir)
			_, ok := findErrorOf(errs, `upstream "extra"`, "upstream_host", msg)
			assert.True(t, ok, "want %q; got:\n%s", msg, describeErrors(errs))
		})
	}
}

// hash_on on a field whose name holds '_': dropped by default
// (underscores_in_headers = false), and, where underscores are kept, when
// a backend would read it as a field edged sets or removes.
func TestHashOnUnderscoreNames(t *testing.T) {
	for _, tc := range []struct {
		v           string
		underscores bool
		want        string // "" loads
	}{
		{"header:X_User", false, "underscores_in_headers = false"},
		{"header:X_User", true, ""},
		{"header:X-User", false, ""},
		{"header:X_Forwarded_For", true, "as X-Forwarded-For"},
		{"header:x_real_ip", true, "as x-real-ip"},
		{"header:client_cert", true, "as client-cert"},
		{"header:Content_Length", true, "as Content-Length"},
		{"header:Transfer_Encoding", true, "as Transfer-Encoding"},
		{"cookie:a_b", false, ""},
	} {
		err := checkHashOn(tc.v, tc.underscores)
		if tc.want == "" {
			assert.NoError(t, err, "%s, underscores %v", tc.v, tc.underscores)
		} else if assert.Error(t, err, "%s, underscores %v", tc.v, tc.underscores) {
			assert.Contains(t, err.Error(), tc.want)
			assert.Contains(t, err.Error(), "never reaches the node")
		}
	}
}
