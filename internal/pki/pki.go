// Package pki makes and loads the certificates of a small lab: one CA the
// operator keeps, a server certificate for each agent (`jsplan serve`) and
// a client certificate for each person or CI job. TCP connections to an
// agent are mutual TLS 1.3: the agent accepts only client certificates its
// CA signed, and the client accepts only an agent certificate from the same
// CA. Keys are ECDSA P-256, written 0600.
package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Kind is what a certificate is for.
type Kind int

// Certificate kinds.
const (
	Server Kind = iota
	Client
)

// Files are the paths of a CA, a certificate and its key.
type Files struct {
	CA, Cert, Key string
}

// NewCA writes a new CA (ca.crt, ca.key) into dir, refusing to overwrite one.
func NewCA(dir, name string, validFor time.Duration) (Files, error) {
	f := Files{CA: filepath.Join(dir, "ca.crt"), Key: filepath.Join(dir, "ca.key")}
	if _, err := os.Stat(f.Key); err == nil {
		return f, fmt.Errorf("%s exists: a CA is made once (remove it to start over)", f.Key)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return f, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return f, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"jsplan lab"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(validFor),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return f, err
	}
	if err := writeKey(f.Key, key); err != nil {
		return f, err
	}
	return f, writePEM(f.CA, "CERTIFICATE", der, 0o644)
}

// ErrBadName is returned by Issue for a name that is not a plain file name.
var ErrBadName = errors.New("bad certificate name")

// Issue signs a certificate for name with the CA in dir and writes
// NAME.crt and NAME.key there. A server certificate is valid for hosts (DNS
// names or IP addresses; name too); a client certificate names its holder.
func Issue(dir, name string, kind Kind, hosts []string, validFor time.Duration) (Files, error) {
	if name == "" || name == "ca" || filepath.Base(name) != name {
		f := Files{CA: filepath.Join(dir, "ca.crt"), Cert: filepath.Join(dir, name+".crt"), Key: filepath.Join(dir, name+".key")}
		return f, fmt.Errorf("%w %q: a plain file name, not \"ca\"", ErrBadName, name)
	}
	ca, err := LoadCA(dir)
	if err != nil {
		return Files{CA: filepath.Join(dir, "ca.crt"), Cert: filepath.Join(dir, name+".crt"), Key: filepath.Join(dir, name+".key")}, err
	}
	c := Cert{File: name, CommonName: name, Organizations: []string{"jsplan lab"}, ValidFor: validFor}
	if kind == Server {
		c.Server, c.Hosts = true, append([]string{name}, hosts...)
	} else {
		c.Client = true
	}
	return ca.Issue(c)
}

// CA is a certificate authority loaded from its directory (ca.crt,
// ca.key), which receives the certificates it issues.
type CA struct {
	dir  string
	cert *x509.Certificate
	key  any
}

// LoadCA loads the CA in dir.
func LoadCA(dir string) (*CA, error) {
	cert, key, err := loadCA(dir)
	if err != nil {
		return nil, err
	}
	return &CA{dir: dir, cert: cert, key: key}, nil
}

// Cert is a certificate for CA.Issue to sign.
type Cert struct {
	// File names the files: FILE.crt and FILE.key in the CA's directory.
	File string
	// CommonName and Organizations name the holder (Kubernetes reads a
	// user and its groups from them).
	CommonName    string
	Organizations []string
	// Client and Server say what the certificate authenticates; a server
	// certificate is valid for Hosts (DNS names or IP addresses).
	Client, Server bool
	Hosts          []string
	ValidFor       time.Duration
}

// Issue signs c and writes its certificate and key (0600), refusing to
// overwrite either.
func (ca *CA) Issue(c Cert) (Files, error) {
	f := Files{CA: filepath.Join(ca.dir, "ca.crt"), Cert: filepath.Join(ca.dir, c.File+".crt"), Key: filepath.Join(ca.dir, c.File+".key")}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return f, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: c.CommonName, Organization: c.Organizations},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(c.ValidFor),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	if c.Client {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	if c.Server {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
		for _, h := range c.Hosts {
			if ip := net.ParseIP(h); ip != nil {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			} else {
				tmpl.DNSNames = append(tmpl.DNSNames, h)
			}
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return f, err
	}
	if err := writeKey(f.Key, key); err != nil {
		return f, err
	}
	return f, writePEM(f.Cert, "CERTIFICATE", der, 0o644)
}

// WritePEM writes der as a PEM block of type typ to a new file.
func WritePEM(path, typ string, der []byte, mode os.FileMode) error {
	return writePEM(path, typ, der, mode)
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	return writePEM(path, "PRIVATE KEY", der, 0o600)
}

func writePEM(path, typ string, der []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if err := pem.Encode(f, &pem.Block{Type: typ, Bytes: der}); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func loadCA(dir string) (*x509.Certificate, any, error) {
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key"))
	if err != nil {
		return nil, nil, fmt.Errorf("loading the CA in %s (make it with `jsplan ca init`): %w", dir, err)
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, nil, err
	}
	return cert, pair.PrivateKey, nil
}

func pool(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return p, nil
}

// ServerConfig is the agent's TLS: its certificate, and only client
// certificates signed by the CA in f.CA.
func ServerConfig(f Files) (*tls.Config, error) {
	if f.CA == "" || f.Cert == "" || f.Key == "" {
		return nil, errors.New("TCP needs --tls-ca, --tls-cert and --tls-key (mutual TLS; `jsplan ca` makes them)")
	}
	c, p, err := loadTLS(f)
	if err != nil {
		return nil, err
	}
	c.ClientAuth, c.ClientCAs = tls.RequireAndVerifyClientCert, p
	return c, nil
}

// ClientConfig is a client's TLS: its certificate, and only an agent
// certificate signed by the CA in f.CA for serverName.
func ClientConfig(f Files, serverName string) (*tls.Config, error) {
	if f.CA == "" || f.Cert == "" || f.Key == "" {
		return nil, errors.New("a tcp: address needs ca, cert and key (mutual TLS)")
	}
	c, p, err := loadTLS(f)
	if err != nil {
		return nil, err
	}
	c.RootCAs, c.ServerName = p, serverName
	return c, nil
}

// loadTLS is what both ends' TLS start from: TLS 1.3 and HTTP/2 with f's
// certificate, and the pool of f's CA.
func loadTLS(f Files) (*tls.Config, *x509.CertPool, error) {
	pair, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return nil, nil, err
	}
	p, err := pool(f.CA)
	if err != nil {
		return nil, nil, err
	}
	return &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{pair}, NextProtos: []string{"h2"}}, p, nil
}
