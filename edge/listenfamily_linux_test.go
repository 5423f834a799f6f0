package edge

import (
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// inOwnNetwork runs the calling test again, in a child process, in a
// network namespace of its own (unshare -rn) whose only interface is
// lo: there it may listen on the wildcard addresses and still be
// reachable from loopback only. It reports true in the child, which then
// runs the test; in the parent it waits for the child, fails with its
// output when it failed, and reports false. Without user namespaces it
// skips the test.
func inOwnNetwork(t *testing.T) bool {
	t.Helper()
	const env = "EDGED_TEST_OWN_NETWORK"
	if os.Getenv(env) == t.Name() {
		return true
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("no unshare(1):", err)
	}
	ip, err := exec.LookPath("ip")
	if err != nil {
		t.Skip("no ip(8):", err)
	}
	if out, err := exec.Command(unshare, "-rn", ip, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Skipf("no network namespace of its own (unshare -rn): %v: %s", err, out)
	}
	exe, err := os.Executable()
	require.NoError(t, err)
	cmd := exec.Command(unshare, "-rn", "sh", "-c", `"$0" link set lo up && exec "$@"`, ip,
		exe, "-test.run=^"+t.Name()+"$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), env+"="+t.Name())
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "the test, in a network namespace of its own:\n%s", out)
	require.Contains(t, string(out), "--- PASS: "+t.Name(), "the child ran the test:\n%s", out)
	return false
}

// reachable reports whether a TCP connection to addr opens.
func reachable(t *testing.T, addr string) bool {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// A listen address of 0.0.0.0 is every IPv4 address, and only those, as
// nginx, HAProxy and Envoy read it. Go's "tcp" binds it as [::] with
// IPV6_V6ONLY off: edged on the default https = "0.0.0.0:443", or an
// admin listener on 0.0.0.0 behind a firewall for IPv4, answered on every
// IPv6 address of the machine too (here: a connection to [::1] was
// accepted). [::] is both families, and an IPv4 client of it is seen,
// logged and forwarded as its IPv4 address (127.0.0.1), not as
// ::ffff:127.0.0.1 or [::ffff:127.0.0.1].
func TestIPv4WildcardListenerIsIPv4Only(t *testing.T) {
	if !inOwnNetwork(t) {
		return
	}
	if !canListen("[::1]:0") {
		t.Skip("no IPv6 loopback in the namespace")
	}
	testCertDir(t)
	b := nameBackend(t, "b")
	access := filepath.Join(t.TempDir(), "access.log")
	te := startEdge(t, map[string]string{
		"server.toml": `[server]
https = "0.0.0.0:0"
http = "[::]:0"
http_mode = "serve"
admin = "0.0.0.0:0"
state_dir = "` + t.TempDir() + `"
drain_timeout = "2s"
`,
		"env.toml": envTOML("test", "[environment.rules.access_log]\npath = \""+filepath.ToSlash(access)+"\"\n") + groupTOML("test", "g", "test.acme.com", "test.acme.com") + proxyTOML("test", "all", "/", b.addr),
	})
	https, plain, admin := te.srv.Addrs()
	for name, a := range map[string]net.Addr{"https": https, "admin": admin} {
		port := strconv.Itoa(a.(*net.TCPAddr).Port)
		assert.True(t, reachable(t, "127.0.0.1:"+port), "%s on 0.0.0.0: reachable over IPv4", name)
		assert.False(t, reachable(t, "[::1]:"+port), "%s on 0.0.0.0: not reachable over IPv6", name)
	}
	port := strconv.Itoa(plain.(*net.TCPAddr).Port)
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	for _, tc := range []struct{ ip, xff, fwd string }{
		{"127.0.0.1", "127.0.0.1", "for=127.0.0.1;host=test.acme.com;proto=http"},
		{"[::1]", "::1", `for="[::1]";host=test.acme.com;proto=http`},
	} {
		req, err := http.NewRequest("GET", "http://"+tc.ip+":"+port+"/x", nil)
		require.NoError(t, err)
		req.Host = "test.acme.com"
		resp, body := do(t, c, req)
		require.Equal(t, http.StatusOK, resp.StatusCode, "http on [::], over %s: %s", tc.ip, body)
		assert.Equal(t, tc.xff, resp.Header.Get("X-Seen-Xff"), "over %s", tc.ip)
		assert.Equal(t, tc.fwd, resp.Header.Get("X-Seen-Forwarded"), "over %s", tc.ip)
	}
	require.Eventually(t, func() bool { b, _ := os.ReadFile(access); return strings.Count(string(b), "\n") == 2 }, 5*time.Second, 10*time.Millisecond)
	logged, err := os.ReadFile(access)
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(string(logged)), "\n")
	assert.Contains(t, lines[0], `"client":"127.0.0.1:`, "the IPv4 client's line")
	assert.Contains(t, lines[1], `"client":"[::1]:`, "the IPv6 client's line")
}

// canListen reports whether a listener on addr can be made.
func canListen(addr string) bool {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	ln.Close()
	return true
}
