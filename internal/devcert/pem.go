package devcert

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
)

// maxPEMFile bounds what readPEM reads, as edged bounds a TLS file
// (config.ReadTLSFile, which this package cannot import: config's tests
// make their certificates here).
const maxPEMFile = 1 << 20

// readPEM reads a CA's or leaf's file. A FIFO (which a plain read waits on
// for ever), a device (/dev/zero, read without end) or a file over
// maxPEMFile is an error, so the file is taken for broken and replaced.
func readPEM(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return nil, err
	} else if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file (%v)", filepath.Base(path), fi.Mode().Type())
	}
	data, err := io.ReadAll(io.LimitReader(f, maxPEMFile+1))
	if err == nil && len(data) > maxPEMFile {
		err = fmt.Errorf("%s: larger than %d bytes", filepath.Base(path), maxPEMFile)
	}
	return data, err
}

// readCerts returns the certificates of a PEM file in order; the error
// wraps os.ErrNotExist when the file is not there.
func readCerts(path string) ([]*x509.Certificate, error) {
	data, err := readPEM(path)
	if err != nil {
		return nil, err
	}
	var certs []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Base(path), err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%s: no certificate in it", filepath.Base(path))
	}
	return certs, nil
}

// readKey accepts PKCS#8, PKCS#1 (RSA, as openssl genrsa writes it) and
// SEC 1 keys, so a CA made by another tool can be dropped in: one whose
// key is not read is taken for broken, and replaced.
func readKey(path string) (crypto.Signer, error) {
	data, err := readPEM(path)
	if err != nil {
		return nil, err
	}
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil, fmt.Errorf("%s: no private key in it", filepath.Base(path))
		}
		var key any
		switch b.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(b.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(b.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(b.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Base(path), err)
		}
		s, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("%s: unsupported key type %T", filepath.Base(path), key)
		}
		return s, nil
	}
}

func encodeCerts(ders ...[]byte) []byte {
	var out []byte
	for _, der := range ders {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	return out
}

func writeKey(path string, key crypto.Signer) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("devcert: %s: %w", path, err)
	}
	return writeAtomic(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

// writeAtomic replaces path in one rename, so a running edged that watches
// the directory never reads half a file. The temporary name is a dotfile:
// watchers skip those. The mode is set before any byte is written, so a
// key is never readable by others, even for a moment.
func writeAtomic(path string, data []byte, mode os.FileMode) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("devcert: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
			err = fmt.Errorf("devcert: writing %s: %w", path, err)
		}
	}()
	if err := f.Chmod(mode); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
