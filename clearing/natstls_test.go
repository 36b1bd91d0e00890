package clearing_test

import (
	"bufio"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/fare"
	"github.com/faregate/faregate/terminal"
)

// TestNATSTLS runs clearing's embedded nats-server with TLS: a terminal
// trusting the CA connects over tls:// and its outbox drains; a client that
// does not trust the CA, or speaks plain NATS, or brings no NKey, is refused.
func TestNATSTLS(t *testing.T) {
	dir := t.TempDir()
	certs := writeTestCerts(t, t.TempDir())
	reg, keys := testRegistry(2)
	led := openLedger(t, filepath.Join(dir, "chain"))
	defer led.Close()
	// Clearing's own connection trusts the server certificate itself (the
	// default without NATSCA).
	cl := startClearing(t, clearing.Config{DataDir: filepath.Join(dir, "clearing"), Registry: reg, Ledger: led, Period: time.Hour,
		NATSTLSCert: certs.Cert, NATSTLSKey: certs.Key})
	defer cl.stop(t)
	url := cl.NATSURL()
	if !strings.HasPrefix(url, "tls://") {
		t.Fatalf("clearing's NATS URL %q with TLS on, want tls://", url)
	}
	hostPort := strings.TrimPrefix(url, "tls://")

	term := startTerminalWith(t, dir, url, reg, keys, "t1", func(c *terminal.Config) { c.NATSCA = certs.CA })
	defer term.stop(t)
	const n = 5
	for i := range n {
		tap(t, term.Terminal, fmt.Sprintf("card-%d", i), fare.Entry)
	}
	waitFor(t, "t1's outbox drained over TLS", 20*time.Second, func() bool { return term.Pending() == 0 })
	if s := cl.Stats(); s.Applied != n || s.Quarantined != 0 {
		t.Fatalf("applied %d, quarantined %d; want %d, 0", s.Applied, s.Quarantined, n)
	}

	ident, err := fare.NewNATSIdentity(keys["t2"], "t2")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		url  string
		opts []nats.Option
		// wantErr is nil when the connection must succeed (over TLS),
		// else a predicate on the error.
		wantErr func(error) bool
	}{
		{"terminal trusting the CA", url, terminal.NATSOptions(ident, "t2", certs.CA), nil},
		// nats.go upgrades a nats:// URL to TLS when the server requires
		// it: the scheme does not open a plaintext path.
		{"nats:// URL, trusting the CA", "nats://" + hostPort, terminal.NATSOptions(ident, "t2", certs.CA), nil},
		{"terminal not trusting the CA", url, terminal.NATSOptions(ident, "t2", ""), isCertError},
		{"nats:// URL, no TLS options", "nats://" + hostPort, terminal.NATSOptions(ident, "t2", ""), isCertError},
		{"the server certificate's CA but no NKey", url, []nats.Option{nats.RootCAs(certs.CA)}, func(err error) bool { return errors.Is(err, nats.ErrAuthorization) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			nc, err := nats.Connect(c.url, append(c.opts, nats.MaxReconnects(0), nats.Timeout(5*time.Second))...)
			if c.wantErr == nil {
				if err != nil {
					t.Fatalf("connect: %v", err)
				}
				defer nc.Close()
				if _, err := nc.TLSConnectionState(); err != nil {
					t.Fatalf("connected without TLS: %v", err)
				}
				if err := nc.FlushTimeout(5 * time.Second); err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				nc.Close()
				t.Fatal("connected")
			}
			if !c.wantErr(err) {
				t.Fatalf("unexpected error: %v", err)
			}
			t.Logf("refused: %v", err)
		})
	}

	// A client speaking plain NATS after the server's INFO, instead of a
	// TLS handshake, gets no +OK nor PONG: the server closes the connection.
	t.Run("plaintext NATS protocol", func(t *testing.T) {
		conn, err := net.DialTimeout("tcp", hostPort, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		r := bufio.NewReader(conn)
		info, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(info, "INFO ") || !strings.Contains(info, `"tls_required":true`) {
			t.Fatalf("server greeting %q, want an INFO with tls_required", info)
		}
		if _, err := io.WriteString(conn, `CONNECT {"verbose":true,"pedantic":false,"name":"plaintext"}`+"\r\nPING\r\n"); err != nil {
			t.Fatal(err)
		}
		rest, err := io.ReadAll(r)
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("server kept the plaintext connection open (read %q)", rest)
		}
		if strings.Contains(string(rest), "PONG") || strings.Contains(string(rest), "+OK") {
			t.Fatalf("server answered plaintext: %q", rest)
		}
		t.Logf("plaintext client closed by the server (read %q, %v)", rest, err)
	})
}

// isCertError reports whether err is the server's certificate failing
// verification: signed by an authority the client does not trust.
func isCertError(err error) bool {
	var unknown x509.UnknownAuthorityError
	return errors.As(err, &unknown)
}
