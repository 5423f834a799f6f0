package config

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"time"
)

// Config is the merged, validated content of one configuration directory.
// It is plain data: nothing in it runs. edge compiles it into a snapshot.
type Config struct {
	Dir          string
	Server       Server
	Environments []*Environment
	EnvGroups    []*EnvGroup
	VirtualHosts []*VirtualHost
	Upstreams    []*Upstream
	Proxies      []*Proxy
	// Files lists every file that was read, sorted by path, with its
	// content hash: the reload and history records compare these.
	Files []File
	// UpstreamCAs holds, by path, the tls_ca_file bundles the upstreams
	// name, read by this load (an upstream object is shared by loads of
	// its unchanged file; the bundle it names is read every time).
	UpstreamCAs map[string]*CABundle
	// UpstreamCerts holds the upstreams' client certificates the same
	// way, by ClientCertKey.
	UpstreamCerts map[string]*ClientCert
	// Warnings are findings that do not stop the config from serving
	// (a certificate that does not cover a hostname, or expires soon).
	Warnings []Error

	// envMetas, groupMetas and vhostMetas are where the environments, env
	// groups and virtual hosts and their fields were written, index for
	// index (see FieldPos). Slices, not a map by object: two loads of the
	// same files give equal Configs (edge's incremental reload tests
	// compare them).
	envMetas, groupMetas, vhostMetas []*objMeta
}

// FieldPos is where field ("rules.access_log.path", "hostnames[1]") of
// obj, an *Environment, *EnvGroup or *VirtualHost of c, is written: its
// line when the file wrote it, else the object's. A check made after Load
// (edged check opening the access logs) names the line it is about.
func (c *Config) FieldPos(obj any, field string) Pos {
	switch o := obj.(type) {
	case *Environment:
		return fieldPos(c.Environments, c.envMetas, o, field, o.Pos)
	case *EnvGroup:
		return fieldPos(c.EnvGroups, c.groupMetas, o, field, o.Pos)
	case *VirtualHost:
		return fieldPos(c.VirtualHosts, c.vhostMetas, o, field, o.Pos)
	}
	return Pos{File: c.Dir}
}

func fieldPos[T comparable](objs []T, metas []*objMeta, obj T, field string, pos Pos) Pos {
	for i, o := range objs {
		if o == obj && i < len(metas) && metas[i] != nil {
			return metas[i].at(field)
		}
	}
	return pos
}

// File is one loaded configuration file.
type File struct {
	Path   string // as found under Dir (symlinks not resolved)
	SHA256 string // hex
	Size   int64
	Data   []byte // the content that was loaded
}

// Pos is where an object or a field was written.
type Pos struct {
	File string `json:"file"`
	Line int    `json:"line,omitempty"` // 0 when unknown
}

func (p Pos) String() string {
	if p.Line > 0 {
		return fmt.Sprintf("%s:%d", p.File, p.Line)
	}
	return p.File
}

// Duration is a time.Duration written as a Go duration string ("1.5s").
type Duration struct{ time.Duration }

// MaxDuration is the longest duration a file may set. A timeout is
// added to the time of day (a deadline is now + the timeout, in
// nanoseconds since 1970): past about 234 years that sum overflows into the
// past, and a timeout meant as "practically never" would fire at once. A
// year is far beyond any timeout, interval or delay edged has; "0s"
// switches off the timeouts that may be off.
const MaxDuration = 365 * 24 * time.Hour

// MinDuration is the shortest duration other than 0 a file may set. A
// timeout, interval or delay below it is a typo ("1ns" for "1s", "1us" for
// "1ms"), not a setting: a connect or response timeout that short fails
// every request at once, a probe timeout takes every node out. HAProxy
// refuses such a value as a "timer underflow".
const MinDuration = time.Millisecond

// UnmarshalText parses "200ms", "30s", "1m".
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("invalid duration %q (use a number with a unit: \"500ms\", \"30s\", \"1m\", at most \"8760h\")", b)
	}
	if v > MaxDuration {
		return fmt.Errorf("%q is longer than 8760h (a year), the longest duration edged takes", b)
	}
	if v > 0 && v < MinDuration {
		return fmt.Errorf("%q is shorter than 1ms, the shortest duration edged takes (\"0s\" switches off the timeouts that may be off)", b)
	}
	d.Duration = v
	return nil
}

// MarshalText writes the duration back in Go syntax.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Server is the [server] table: process-wide settings.
type Server struct {
	HTTPS              string   `toml:"https"`                // TLS listener address
	HTTP               string   `toml:"http"`                 // optional plain listener ("" = none)
	HTTPMode           string   `toml:"http_mode"`            // "redirect" | "serve"
	Admin              string   `toml:"admin"`                // /metrics, /healthz, /readyz, /status
	StateDir           string   `toml:"state_dir"`            // history, audit log, control socket
	AccessLogDir       string   `toml:"access_log_dir"`       // environments' access log files only in it or below ("" = anywhere)
	DrainTimeout       Duration `toml:"drain_timeout"`        // old generations finish in-flight work
	ShutdownDelay      Duration `toml:"shutdown_delay"`       // SIGTERM: /readyz 503 while still serving, before draining (0 = none)
	ReloadDebounce     Duration `toml:"reload_debounce"`      // quiet period after the last file event
	ReloadMaxWait      Duration `toml:"reload_max_wait"`      // a file rewritten forever still reloads after this
	RescanInterval     Duration `toml:"rescan_interval"`      // periodic content-hash rescan (0 = off)
	DefaultVirtualHost string   `toml:"default_virtual_host"` // serves no/unknown SNI; "" = reject
	MaxBodyBytes       int64    `toml:"max_body_bytes"`       // 413 above it; environments may override
	HistoryKeep        int      `toml:"history_keep"`         // generations kept in state_dir

	// Client-side timeouts and limits of the listeners.
	ReadHeaderTimeout Duration `toml:"read_header_timeout"`
	ReadTimeout       Duration `toml:"read_timeout"`  // whole request incl. body; 0 = none
	WriteTimeout      Duration `toml:"write_timeout"` // idle time allowed between writes to a client
	IdleTimeout       Duration `toml:"idle_timeout"`  // keep-alive between requests
	MaxHeaderBytes    int      `toml:"max_header_bytes"`
	// MaxConnections bounds the clients' connections open at once on the
	// public listeners together; 0 (unset): half the open-file limit.
	MaxConnections int `toml:"max_connections"`

	// HTTP/2 limits. An int, not HTTP/2's uint32, so that every value
	// out of range gets validation's message naming the range.
	H2MaxConcurrentStreams int `toml:"h2_max_concurrent_streams"`

	// UnderscoresInHeaders keeps request header fields whose name holds
	// an underscore; by default they are dropped before forwarding
	// (nginx's underscores_in_headers).
	UnderscoresInHeaders bool `toml:"underscores_in_headers"`

	Pos Pos `toml:"-"`
}

// Environment is one [[environment]]: an isolated runtime.
type Environment struct {
	Name         string   `toml:"name"`
	Workers      int      `toml:"workers"`
	Queue        *int     `toml:"queue"` // nil = default; 0 = no queue
	QueueTimeout Duration `toml:"queue_timeout"`
	// RejectDelay is how long a request that finds the queue full is held
	// (holding no worker) before its 503; default: QueueTimeout, at most
	// DefaultMaxRejectDelay; 0 answers at once.
	RejectDelay  Duration          `toml:"reject_delay"`
	MaxBodyBytes *int64            `toml:"max_body_bytes"` // nil = the server's
	Labels       map[string]string `toml:"labels"`
	Rules        Rules             `toml:"rules"`

	Pos Pos `toml:"-"`
}

// QueueLen is the effective queue length.
func (e *Environment) QueueLen() int {
	if e.Queue == nil {
		return DefaultQueue
	}
	return *e.Queue
}

// ProxyLimits is the share of its environment's pool a proxy may use: at
// most maxInFlight workers and maxQueued queue places. An environment with
// one proxy gives it everything unless max_in_flight says otherwise. With
// several, each proxy leaves a quarter of the workers (at least one) to
// its siblings by default, so a proxy whose backend hangs cannot take every
// worker: the siblings keep being served. An explicit max_in_flight above
// the environment's workers means all of them. The queue is shared in the
// same proportion as the workers (at least one place when there is a
// queue), so the hung proxy's waiters cannot fill it either.
func (e *Environment) ProxyLimits(p *Proxy, proxies int) (maxInFlight, maxQueued int) {
	maxInFlight, queue := e.Workers, e.QueueLen()
	if proxies > 1 {
		maxInFlight = leaveAQuarter(maxInFlight)
	}
	if p.MaxInFlight != nil {
		maxInFlight = min(*p.MaxInFlight, e.Workers)
	}
	maxQueued = int(int64(queue) * int64(maxInFlight) / int64(e.Workers))
	if queue > 0 && maxQueued == 0 {
		maxQueued = 1
	}
	return maxInFlight, maxQueued
}

// leaveAQuarter is n less a quarter of it, at least one less, but never
// below one (a single worker cannot be shared).
func leaveAQuarter(n int) int {
	if n < 2 {
		return n
	}
	return n - max(1, n/4)
}

// Rules are the per-environment global rules; a rule is on when its table
// is present, unless it says enabled = false.
type Rules struct {
	Prometheus *Rule          `toml:"prometheus"`
	AccessLog  *AccessLogRule `toml:"access_log"`
	AuditLog   *Rule          `toml:"audit_log"`
}

// Rule is a rule with nothing to set but whether it is on.
type Rule struct {
	Enabled *bool `toml:"enabled"`
}

// On reports whether the rule's table is present and not switched off.
func (r *Rule) On() bool { return r != nil && (r.Enabled == nil || *r.Enabled) }

// AccessLogRule writes a line per request; Path "" means stdout.
type AccessLogRule struct {
	Enabled *bool  `toml:"enabled"`
	Path    string `toml:"path"`
	// Format is "json" (the default: one JSON object per line) or
	// "combined" (nginx's combined format, for existing log tooling).
	Format string `toml:"format"`
}

// Access log formats.
const (
	AccessLogJSON     = "json"
	AccessLogCombined = "combined"
)

// On reports whether the rule's table is present and not switched off.
func (r *AccessLogRule) On() bool { return r != nil && (r.Enabled == nil || *r.Enabled) }

// EnvGroup is one [[env_group]]: hostnames and the environments serving them.
type EnvGroup struct {
	Name         string   `toml:"name"`
	Hostnames    []string `toml:"hostnames"` // normalised by validation: lowercase, punycode, no trailing dot
	Environments []string `toml:"environments"`

	Pos Pos `toml:"-"`
}

// VirtualHost is one [[virtual_host]]: TLS for the env group of the same name.
type VirtualHost struct {
	Name         string   `toml:"name"`
	CertFile     string   `toml:"cert_file"` // made absolute by the loader
	KeyFile      string   `toml:"key_file"`
	MinTLS       string   `toml:"min_tls"` // "1.2" default
	MaxTLS       string   `toml:"max_tls"` // "1.3" default
	CipherSuites []string `toml:"cipher_suites"`
	ClientCAFile string   `toml:"client_ca_file"`
	// AllowLegacyTLS must be true for min_tls "1.0" or "1.1".
	AllowLegacyTLS bool `toml:"allow_legacy_tls"`
	// ForwardClientCert sends the client's certificate to the nodes as
	// RFC 9440's Client-Cert and Client-Cert-Chain; only with
	// ClientCAFile.
	ForwardClientCert bool `toml:"forward_client_cert"`

	// Certificate is the loaded cert_file/key_file pair, Leaf parsed; set by
	// Load.
	Certificate tls.Certificate `toml:"-"`
	// ClientCAs is the pool loaded from client_ca_file; nil without one.
	ClientCAs *x509.CertPool `toml:"-"`
	// ClientCANotAfter is the earliest end of the CAs of client_ca_file
	// (CABundle.NotAfter); zero without one. Not in the history's hash:
	// ClientCAs is not either.
	ClientCANotAfter time.Time `toml:"-" json:"-"`

	Pos Pos `toml:"-"`
}

// Upstream is one [[upstream]]: a pool of backend nodes in one environment.
type Upstream struct {
	Name            string   `toml:"name"`
	Environment     string   `toml:"environment"`
	Nodes           []Node   `toml:"nodes"`
	Balance         string   `toml:"balance"` // round_robin | least_request | hash
	HashOn          string   `toml:"hash_on"` // header:X | cookie:X | client_ip
	PassHost        string   `toml:"pass_host"`
	UpstreamHost    string   `toml:"upstream_host"`
	ConnectTimeout  Duration `toml:"connect_timeout"`
	ResponseTimeout Duration `toml:"response_timeout"`
	Retries         *int     `toml:"retries"`
	MaxIdlePerNode  int      `toml:"max_idle_per_node"`
	IdleTimeout     Duration `toml:"idle_timeout"`
	// TLSCAFile is the PEM bundle https nodes' certificates are verified
	// against (empty: the system's roots); TLSServerName the name sent
	// in SNI and checked in them (empty: each node's host).
	TLSCAFile     string `toml:"tls_ca_file"`
	TLSServerName string `toml:"tls_server_name"`
	// TLSCertFile and TLSKeyFile are the client certificate (then its
	// chain) and key shown to https nodes that ask for one; both or
	// neither.
	TLSCertFile string `toml:"tls_cert_file"`
	TLSKeyFile  string `toml:"tls_key_file"`
	Health      Health `toml:"health"`

	Pos Pos `toml:"-"`
}

// RetryCount is the effective number of retries.
func (u *Upstream) RetryCount() int {
	if u.Retries == nil {
		return DefaultRetries
	}
	return *u.Retries
}

// Node is one backend of an upstream.
type Node struct {
	URL    string `toml:"url"` // http://host:port or https://host:port, no path
	Weight int    `toml:"weight"`
}

// Health holds the optional health checks of an upstream.
type Health struct {
	Active  *ActiveHealth  `toml:"active"`
	Passive *PassiveHealth `toml:"passive"`
}

// ActiveHealth probes every node with GET Path each Interval.
type ActiveHealth struct {
	Path      string   `toml:"path"`
	Interval  Duration `toml:"interval"`
	Timeout   Duration `toml:"timeout"`
	Healthy   int      `toml:"healthy"`   // successes that bring a node back
	Unhealthy int      `toml:"unhealthy"` // failures that take it out
}

// PassiveHealth ejects a node after Failures consecutive failures.
type PassiveHealth struct {
	Failures int      `toml:"failures"`
	Eject    Duration `toml:"eject"`
}

// Proxy is one [[proxy]]: a base path in one environment and where it goes.
type Proxy struct {
	Name        string `toml:"name"`
	Environment string `toml:"environment"`
	BasePath    string `toml:"base_path"`
	Upstream    string `toml:"upstream"`
	// Target is a one-node upstream written as a URL; its path is the
	// target path.
	Target string `toml:"target"`
	// TargetPath prefixes forwarded paths when Upstream is used.
	TargetPath string `toml:"target_path"`
	// MaxInFlight caps the environment's workers this proxy may hold at
	// once; nil = all but a quarter of them (at least one left) when the
	// environment has several proxies. See ProxyLimits.
	MaxInFlight *int `toml:"max_in_flight"`

	Pos Pos `toml:"-"`
}

// Defaults, applied by the loader to what a file leaves out.
const (
	DefaultHTTPS             = "0.0.0.0:443"
	DefaultAdmin             = "127.0.0.1:9901"
	DefaultStateDir          = "/var/lib/edged"
	DefaultDrainTimeout      = 30 * time.Second
	DefaultShutdownDelay     = 5 * time.Second
	DefaultReloadDebounce    = 200 * time.Millisecond
	DefaultReloadMaxWait     = 2 * time.Second
	DefaultRescanInterval    = 30 * time.Second
	DefaultMaxBodyBytes      = 10 << 20
	DefaultHistoryKeep       = 50
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultReadTimeout       = 60 * time.Second
	DefaultWriteTimeout      = 60 * time.Second
	DefaultIdleTimeout       = 120 * time.Second
	DefaultMaxHeaderBytes    = 64 << 10
	DefaultH2Streams         = 250
	DefaultWorkers           = 64
	DefaultQueue             = 256
	DefaultQueueTimeout      = time.Second
	DefaultMaxRejectDelay    = time.Second
	DefaultBalance           = "round_robin"
	DefaultPassHost          = "pass"
	DefaultConnectTimeout    = 2 * time.Second
	DefaultResponseTimeout   = 30 * time.Second
	DefaultRetries           = 1
	DefaultMaxIdlePerNode    = 256
	DefaultUpstreamIdle      = 90 * time.Second
	DefaultHealthInterval    = 5 * time.Second
	DefaultHealthTimeout     = 2 * time.Second
	DefaultHealthThreshold   = 2
	DefaultPassiveFailures   = 5
	DefaultPassiveEject      = 30 * time.Second
	DefaultMinTLS            = "1.2"
	DefaultMaxTLS            = "1.3"
	CertExpiryWarning        = 14 * 24 * time.Hour
)
