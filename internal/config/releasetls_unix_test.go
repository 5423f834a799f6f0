//go:build unix

package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// keepSwapping re-points the symlink link at each of targets in turn,
// without pause, each time atomically (a new link renamed over it, as ln
// -sfn and Kubernetes' atomic writer do), until the test ends.
func keepSwapping(t *testing.T, link string, targets ...string) {
	t.Helper()
	stop, swapped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(swapped)
		tmp := filepath.Join(filepath.Dir(link), ".swap.tmp")
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			_ = os.Remove(tmp)
			if os.Symlink(targets[i%len(targets)], tmp) == nil {
				_ = os.Rename(tmp, link)
			}
		}
	}()
	t.Cleanup(func() {
		close(stop)
		<-swapped
	})
}

// versionObjects is baseObjects for the hostname of version v, with the
// certificate and key named as cert and key.
func versionObjects(v, cert, key string) string {
	s := strings.ReplaceAll(baseObjects, `["test.example.com", "*.test.example.com"]`, `["`+v+`.example.com"]`)
	s = strings.ReplaceAll(s, "../certs/test.pem", cert)
	return strings.ReplaceAll(s, "../certs/test.key", key)
}

// loadsOfOneVersion loads dir again and again for at most 3 s (the links
// keepSwapping re-points meanwhile) and counts the loads that failed or
// served a virtual host a certificate of another version than its
// configuration (each version's certificate is for its own hostname).
func loadsOfOneVersion(t *testing.T, dir string) {
	t.Helper()
	ld := &Loader{Dir: dir}
	var torn []string
	loads := 0
	for deadline := time.Now().Add(3 * time.Second); loads < 100 && time.Now().Before(deadline); loads++ {
		cfg, err := ld.Load()
		if err != nil {
			torn = append(torn, err.Error())
			continue
		}
		require.Len(t, cfg.VirtualHosts, 1)
		want, got := cfg.EnvGroups[0].Hostnames[0], cfg.VirtualHosts[0].Certificate.Leaf.DNSNames[0]
		if got != want {
			torn = append(torn, "the virtual host of "+want+" has the certificate of "+got)
		}
	}
	if !assert.Empty(t, torn, "loads of %d that read files of two versions", loads) {
		t.Logf("first: %s", torn[0])
	}
}

// TestLoadReadsTLSFilesOfItsRelease: -c names a release link (current ->
// releases/v1) that a deploy re-points with ln -sfn, and a virtual host's
// certificate and key are files of the release, named by relative paths:
// in the tree (cert_file = "certs/site.pem" with -c current), or beside
// it (-c current/conf.d, cert_file = "../certs/site.pem", DESIGN's
// layout). A load reads its configuration from the release the link led
// to when the load began (TestLoadReadsOneReleaseOfASwappedLink); the
// certificate and key were read by name, after, each from whichever
// release the link led to by then: a virtual host of one release with the
// other's certificate, or a key that does not match its certificate (a
// failed reload). They are read from the configuration's release.
func TestLoadReadsTLSFilesOfItsRelease(t *testing.T) {
	for _, layout := range []string{"in the tree", "beside the tree"} {
		t.Run(layout, func(t *testing.T) {
			root := t.TempDir()
			conf, cert, key := "", "certs/site.pem", "certs/site.key"
			if layout == "beside the tree" {
				conf, cert, key = "conf.d", "../certs/site.pem", "../certs/site.key"
			}
			for _, v := range []string{"v1", "v2"} {
				c := newCert(t, []string{v + ".example.com"}, time.Now().Add(365*24*time.Hour))
				rel := filepath.Join(root, "releases", v)
				writeTree(t, rel, map[string]string{
					filepath.Join(conf, "00-server.toml"): baseServer,
					filepath.Join(conf, "10-base.toml"):   versionObjects(v, cert, key),
					"certs/site.pem":                      string(c.cert),
					"certs/site.key":                      string(c.key),
				})
			}
			current := filepath.Join(root, "current")
			require.NoError(t, os.Symlink(filepath.Join("releases", "v1"), current))
			keepSwapping(t, current, filepath.Join("releases", "v2"), filepath.Join("releases", "v1"))
			loadsOfOneVersion(t, filepath.Join(current, conf))
		})
	}
}

// TestLoadReadsOneVersionOfAKubernetesVolume: a ConfigMap mounted as
// conf.d, and a Secret mounted as certs, as the kubelet writes them: each
// key a link through "..data" (a.toml -> ..data/a.toml, tls.crt ->
// ..data/tls.crt), "..data" a link to a timestamped directory, an update a
// new such directory and "..data" swapped to it by a rename (here the two
// directories are kept, so that no read finds its file gone). The files
// of a load were each read through "..data" as it was at their read: one
// load read some files of one version and the rest of the other, and a
// certificate with the other version's key.
func TestLoadReadsOneVersionOfAKubernetesVolume(t *testing.T) {
	t.Run("ConfigMap", func(t *testing.T) {
		root := t.TempDir()
		dir := filepath.Join(root, "conf.d")
		var versions []string
		for _, v := range []string{"v1", "v2"} {
			ts := "..2026_12_07_17_00_00." + v
			versions = append(versions, ts)
			for i := range releaseFiles {
				name := "f" + strconv.Itoa(1000+i) + ".toml"
				writeTree(t, filepath.Join(dir, ts), map[string]string{name: "# version " + v + "\n"})
				if v == "v1" {
					require.NoError(t, os.Symlink(filepath.Join("..data", name), filepath.Join(dir, name)))
				}
			}
		}
		require.NoError(t, os.Symlink(versions[0], filepath.Join(dir, "..data")))
		keepSwapping(t, filepath.Join(dir, "..data"), versions[1], versions[0])

		ld := &Loader{Dir: dir}
		mixed, loads := 0, 0
		for deadline := time.Now().Add(3 * time.Second); loads < 100 && time.Now().Before(deadline); loads++ {
			cfg, _ := ld.Load()
			require.NotNil(t, cfg)
			require.Len(t, cfg.Files, releaseFiles, "each key once, through its top-level link")
			seen := map[string]bool{}
			for _, f := range cfg.Files {
				seen[string(f.Data)] = true
			}
			if len(seen) > 1 {
				mixed++
			}
		}
		assert.Zero(t, mixed, "loads that read files of both versions, of %d", loads)
	})

	t.Run("Secret", func(t *testing.T) {
		root := t.TempDir()
		dir, certs := filepath.Join(root, "conf.d"), filepath.Join(root, "certs")
		writeTree(t, dir, map[string]string{
			"00-server.toml": baseServer,
			"10-base.toml":   versionObjects("test", "../certs/tls.crt", "../certs/tls.key"),
		})
		var versions []string
		for _, v := range []string{"v1", "v2"} {
			ts := "..2026_12_07_17_00_00." + v
			versions = append(versions, ts)
			c := newCert(t, []string{"test.example.com"}, time.Now().Add(365*24*time.Hour))
			writeTree(t, filepath.Join(certs, ts), map[string]string{"tls.crt": string(c.cert), "tls.key": string(c.key)})
		}
		for _, name := range []string{"tls.crt", "tls.key"} {
			require.NoError(t, os.Symlink(filepath.Join("..data", name), filepath.Join(certs, name)))
		}
		require.NoError(t, os.Symlink(versions[0], filepath.Join(certs, "..data")))
		keepSwapping(t, filepath.Join(certs, "..data"), versions[1], versions[0])
		loadsOfOneVersion(t, dir)
	})
}

// TestLoadReadsAKubernetesVolumeBeingUpdated: the kubelet removes a
// volume's old timestamped directory as soon as "..data" leads to the new
// one, so a load that found its files through the old "..data" finds them
// gone when it reads them. It reads the version "..data" leads to then,
// whole, rather than fail (a failed reload, told to systemd and counted)
// or read the rest of the files from the new version.
func TestLoadReadsAKubernetesVolumeBeingUpdated(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "conf.d")
	const files = 20
	// update is the kubelet's atomic writer; it runs on a goroutine of
	// its own (t.Error, not require).
	must := func(err error) {
		if err != nil {
			t.Error(err)
		}
	}
	update := func(v int) {
		ts := filepath.Join(dir, "..2026_12_07_17_00_00."+strconv.Itoa(v))
		must(os.MkdirAll(ts, 0o755))
		for i := range files {
			name := "f" + strconv.Itoa(1000+i) + ".toml"
			must(os.WriteFile(filepath.Join(ts, name), []byte("# version "+strconv.Itoa(v)+"\n"), 0o644))
			if v == 0 {
				must(os.Symlink(filepath.Join("..data", name), filepath.Join(dir, name)))
			}
		}
		old, _ := os.Readlink(filepath.Join(dir, "..data"))
		tmp := filepath.Join(dir, "..data_tmp")
		must(os.Symlink(filepath.Base(ts), tmp))
		must(os.Rename(tmp, filepath.Join(dir, "..data")))
		if old != "" {
			must(os.RemoveAll(filepath.Join(dir, old)))
		}
	}
	update(0)
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		for v := 1; ; v++ {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			update(v)
		}
	}()
	t.Cleanup(func() {
		close(stop)
		<-stopped
	})

	ld := &Loader{Dir: dir}
	var torn []string
	loads := 0
	for deadline := time.Now().Add(3 * time.Second); loads < 200 && time.Now().Before(deadline); loads++ {
		cfg, err := ld.Load()
		require.NotNil(t, cfg)
		if len(cfg.Files) != files {
			torn = append(torn, fmt.Sprintf("%d files: %v", len(cfg.Files), err))
			continue
		}
		seen := map[string]bool{}
		for _, f := range cfg.Files {
			seen[string(f.Data)] = true
		}
		if len(seen) > 1 {
			torn = append(torn, fmt.Sprintf("files of %d versions", len(seen)))
		}
	}
	if !assert.Empty(t, torn, "loads of %d that read some files of a version and not all", loads) {
		t.Logf("first: %s", torn[0])
	}
}
