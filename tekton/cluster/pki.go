package cluster

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"time"

	jspki "github.com/jsplan/jsplan/internal/pki"
)

// pki is the cluster's certificate authority and the files made from it, in
// one directory: ca.crt, <name>.crt and <name>.key, sa.key and sa.pub. The
// certificates are made by internal/pki, the agent's package.
type pki struct {
	dir string
	ca  *jspki.CA
}

// certLife is how long the cluster's certificates are valid.
const certLife = 24 * time.Hour

// newPKI makes a new CA in dir (what an earlier start left there is void:
// removed) and the service accounts' signing pair.
func newPKI(dir string) (*pki, error) {
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	if _, err := jspki.NewCA(dir, "jsplan-cluster-ca", certLife); err != nil {
		return nil, err
	}
	ca, err := jspki.LoadCA(dir)
	if err != nil {
		return nil, err
	}
	p := &pki{dir: dir, ca: ca}
	// The service account token signing pair (RSA, as the API server's
	// default issuer expects).
	sa, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	if err := jspki.WritePEM(p.path("sa.key"), "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(sa), 0o600); err != nil {
		return nil, err
	}
	pub, err := x509.MarshalPKIXPublicKey(&sa.PublicKey)
	if err != nil {
		return nil, err
	}
	return p, jspki.WritePEM(p.path("sa.pub"), "PUBLIC KEY", pub, 0o644)
}

func (p *pki) path(name string) string { return filepath.Join(p.dir, name) }

// issue writes name.crt and name.key: a certificate for a client (cn, orgs)
// or, with hosts, for a server too.
func (p *pki) issue(name, cn string, orgs []string, hosts ...string) error {
	_, err := p.ca.Issue(jspki.Cert{File: name, CommonName: cn, Organizations: orgs,
		Client: true, Server: len(hosts) > 0, Hosts: hosts, ValidFor: certLife})
	return err
}

// kubeconfig writes name.kubeconfig for the client certificate name.crt.
func (p *pki) kubeconfig(name, server string) (string, error) {
	file := p.path(name + ".kubeconfig")
	body := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: jsplan
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: %s
  user:
    client-certificate: %s
    client-key: %s
contexts:
- name: jsplan
  context: {cluster: jsplan, user: %s}
current-context: jsplan
`, server, p.path("ca.crt"), name, p.path(name+".crt"), p.path(name+".key"), name)
	return file, os.WriteFile(file, []byte(body), 0o600)
}
