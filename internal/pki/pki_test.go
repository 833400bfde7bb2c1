package pki

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// What the test cluster asks of the CA (tekton/cluster/pki.go): each
// certificate chains to the CA, says who it is (CN, organizations:
// Kubernetes' user and groups) and what it authenticates.
func TestCAIssue(t *testing.T) {
	dir := t.TempDir()
	if _, err := NewCA(dir, "test-ca", time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := NewCA(dir, "test-ca", time.Hour); err == nil {
		t.Error("NewCA overwrote a CA")
	}
	ca, err := LoadCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := ca.Issue(Cert{File: "admin", CommonName: "jsplan-admin", Organizations: []string{"system:masters"}, Client: true, ValidFor: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ca.Issue(Cert{File: "apiserver", CommonName: "kube-apiserver", Client: true, Server: true, Hosts: []string{"127.0.0.1", "kubernetes"}, ValidFor: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ca.Issue(Cert{File: "admin", CommonName: "x", Client: true, ValidFor: time.Hour}); err == nil {
		t.Error("Issue overwrote a certificate")
	}
	roots := x509.NewCertPool()
	roots.AddCert(load(t, filepath.Join(dir, "ca.crt")))
	a := load(t, admin.Cert)
	if _, err := a.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("admin as a client: %v", err)
	}
	if _, err := a.Verify(x509.VerifyOptions{Roots: roots}); err == nil {
		t.Error("a client-only certificate verifies as a server")
	}
	if a.Subject.CommonName != "jsplan-admin" || !slices.Equal(a.Subject.Organization, []string{"system:masters"}) {
		t.Errorf("admin names %v", a.Subject)
	}
	s := load(t, srv.Cert)
	for _, ku := range []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth} {
		if _, err := s.Verify(x509.VerifyOptions{Roots: roots, DNSName: "kubernetes", KeyUsages: []x509.ExtKeyUsage{ku}}); err != nil {
			t.Errorf("apiserver for %v: %v", ku, err)
		}
	}
	if len(s.IPAddresses) != 1 || s.IPAddresses[0].String() != "127.0.0.1" {
		t.Errorf("apiserver IPs %v", s.IPAddresses)
	}
	if fi, err := os.Stat(srv.Key); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key %v %v", fi, err)
	}
	if _, err := Issue(dir, "../x", Client, nil, time.Hour); !errors.Is(err, ErrBadName) {
		t.Errorf("Issue(../x) = %v, want ErrBadName", err)
	}
}

func load(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
