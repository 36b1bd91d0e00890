package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/fare"
	"github.com/faregate/faregate/ledger"
)

// runNATSCmd runs `faregate nats ARGS...` and returns its stdout and stderr
// apart.
func runNATSCmd(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	root := newRootCmd()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(append([]string{"nats"}, args...))
	err := root.Execute()
	return out.String(), errOut.String(), err
}

// natsTestTerminals are the terminals put on the test chain; bus-2 is revoked.
var natsTestTerminals = func() map[string]ed25519.PrivateKey {
	keys := make(map[string]ed25519.PrivateKey)
	for i, id := range []string{"metro-1", "metro-2", "bus-1", "bus-2"} {
		seed := make([]byte, ed25519.SeedSize)
		seed[0], seed[1] = byte(i+1), 0x4e
		keys[id] = ed25519.NewKeyFromSeed(seed)
	}
	return keys
}()

// natsTestChain makes data/chain with metro and bus, their terminals
// registered and bus-2 revoked, as `faregate clearing --data data` leaves it.
func natsTestChain(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	data := t.TempDir()
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	e, err := ledger.OpenEmbedded(ctx, filepath.Join(data, "chain"), ledger.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	reg := &clearing.Registry{Currency: "EUR", Operators: []clearing.OperatorConfig{{ID: "metro", FlatFare: 250}, {ID: "bus", FlatFare: 180}}}
	for _, id := range []string{"metro-1", "metro-2", "bus-1", "bus-2"} {
		reg.Terminals = append(reg.Terminals, provenTerminal(natsTestTerminals[id], id, strings.Split(id, "-")[0], "stop-"+id))
	}
	if err := clearing.PublishRegistry(ctx, e, reg); err != nil {
		t.Fatal(err)
	}
	bus, err := e.OperatorAccount(ctx, "bus")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bus.RevokeTerminal(ctx, "bus-2"); err != nil {
		t.Fatal(err)
	}
	return data
}

// writeSelfSigned writes a self-signed certificate for 127.0.0.1 and its key
// as PEM files named prefix.pem and prefix-key.pem in dir.
func writeSelfSigned(t *testing.T, dir, prefix string) (cert, key string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "faregate nats test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	cert, key = filepath.Join(dir, prefix+".pem"), filepath.Join(dir, prefix+"-key.pem")
	if err := os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func TestNATSConfig(t *testing.T) {
	data := natsTestChain(t)
	files := t.TempDir()
	cert, key := writeSelfSigned(t, files, "server")
	_, otherKey := writeSelfSigned(t, files, "other")
	accountSeed := filepath.Join(files, "account.nk")
	akp, _ := nkeys.CreateAccount()
	aseed, _ := akp.Seed()
	os.WriteFile(accountSeed, aseed, 0o600)
	garbageSeed := filepath.Join(files, "garbage.nk")
	os.WriteFile(garbageSeed, []byte("not a seed\n"), 0o600)
	newSeed := filepath.Join(files, "clearing.nk") // does not exist yet
	out := filepath.Join(files, "nats.conf")

	// Each bad invocation fails with an error naming the problem and
	// writes nothing: no --out file, no seed file, nothing on stdout.
	bad := []struct {
		name string
		args []string
		want string // in the error
	}{
		{"no --clearing-seed", []string{"--data", data}, "--clearing-seed FILE is required"},
		{"an account seed", []string{"--data", data, "--clearing-seed", accountSeed}, "not a user seed"},
		{"not a seed", []string{"--data", data, "--clearing-seed", garbageSeed}, "not an NKey seed"},
		{"seed in a missing directory", []string{"--data", data, "--clearing-seed", filepath.Join(files, "none", "c.nk")}, "--clearing-seed: directory of"},
		{"--tls-cert without --tls-key", []string{"--data", data, "--clearing-seed", newSeed, "--tls-cert", cert}, "--tls-cert and --tls-key go together"},
		{"--tls-key without --tls-cert", []string{"--data", data, "--clearing-seed", newSeed, "--tls-key", key}, "--tls-cert and --tls-key go together"},
		{"a key of another certificate", []string{"--data", data, "--clearing-seed", newSeed, "--tls-cert", cert, "--tls-key", otherKey}, "private key does not match public key"},
		{"a missing certificate", []string{"--data", data, "--clearing-seed", newSeed, "--tls-cert", filepath.Join(files, "none.pem"), "--tls-key", key}, "no such file"},
		{"--listen without a port", []string{"--data", data, "--clearing-seed", newSeed, "--listen", "127.0.0.1"}, "--listen \"127.0.0.1\": want HOST:PORT"},
		{"--listen port out of range", []string{"--data", data, "--clearing-seed", newSeed, "--listen", "127.0.0.1:70000"}, "not in 1..65535"},
		{"--jetstream-dir with a quote", []string{"--data", data, "--clearing-seed", newSeed, "--jetstream-dir", `/var/"js`}, "quotes, backslashes"},
		{"--jetstream-dir is a file", []string{"--data", data, "--clearing-seed", newSeed, "--jetstream-dir", cert}, "is not a directory"},
		{"--out in a missing directory", []string{"--data", data, "--clearing-seed", newSeed, "--out", filepath.Join(files, "none", "nats.conf")}, "--out: directory of"},
		{"--out is a directory", []string{"--data", data, "--clearing-seed", newSeed, "--out", files}, "is a directory"},
		{"--out is the seed", []string{"--data", data, "--clearing-seed", newSeed, "--out", newSeed}, "same file"},
		{"no chain in --data", []string{"--data", files, "--clearing-seed", newSeed}, "no embedded chain in"},
		{"--eth-rpc without --contract", []string{"--eth-rpc", "http://127.0.0.1:1", "--eth-key", key, "--clearing-seed", newSeed}, "--eth-rpc needs --contract"},
		// Reading needs no key: it goes to the node (none here).
		{"--eth-rpc without --eth-key, no node", []string{"--eth-rpc", "http://127.0.0.1:1", "--contract", "0x0000000000000000000000000000000000000001", "--clearing-seed", newSeed}, "open ledger"},
		// Checked as clearing checks it: not dialled (its key was quoted
		// in the dial's error), a usage error naming no secret.
		{"--eth-rpc without a scheme", []string{"--eth-rpc", "alice:PWs3cret77@127.0.0.1:1", "--contract", "0x0000000000000000000000000000000000000001", "--clearing-seed", newSeed}, `--eth-rpc "xxxxx@127.0.0.1:1": want a JSON-RPC URL`},
		{"--eth-rpc with a key, no scheme", []string{"--eth-rpc", "mainnet.example.io/v3/0123456789abcdefSECRETKEY", "--contract", "0x0000000000000000000000000000000000000001", "--clearing-seed", newSeed}, `--eth-rpc "mainnet.example.io/v3/xxxxx"`},
		{"--contract without --eth-rpc", []string{"--data", data, "--contract", "0x0000000000000000000000000000000000000001", "--clearing-seed", newSeed}, "go with --eth-rpc"},
		{"an argument", []string{"--data", data, "--clearing-seed", newSeed, "extra"}, "unknown command"},
	}
	for _, b := range bad {
		t.Run(b.name, func(t *testing.T) {
			stdout, _, err := runNATSCmd(t, append([]string{"config", "--out", out}, b.args...)...)
			if err == nil || !strings.Contains(err.Error(), b.want) || strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "SECRETKEY") {
				t.Fatalf("err %v, want one containing %q, no secret", err, b.want)
			}
			t.Logf("%v", err)
			for _, f := range []string{out, newSeed, filepath.Join(files, "none")} {
				if _, err := os.Stat(f); err == nil {
					t.Fatalf("%s written", f)
				}
			}
			if stdout != "" {
				t.Fatalf("wrote to stdout: %q", stdout)
			}
			if left, _ := filepath.Glob(filepath.Join(files, ".faregate-nats-*")); len(left) > 0 {
				t.Fatalf("temporary files left: %v", left)
			}
		})
	}

	// The happy path: a new seed is made, the configuration admits the
	// registry's active terminals and clearing, and nats-server parses it.
	jsDir := filepath.Join(files, "jetstream")
	args := []string{"config", "--data", data, "--clearing-seed", newSeed, "--listen", "127.0.0.1:4333", "--jetstream-dir", jsDir,
		"--tls-cert", cert, "--tls-key", key}
	stdout, stderr, err := runNATSCmd(t, append(args, "--out", out)...)
	if err != nil {
		t.Fatalf("nats config: %v\n%s", err, stderr)
	}
	if stdout != "" {
		t.Errorf("stdout with --out: %q", stdout)
	}
	st, err := os.Stat(newSeed)
	if err != nil {
		t.Fatalf("seed not created: %v", err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("seed mode %v, want 0600", st.Mode().Perm())
	}
	seed, _ := os.ReadFile(newSeed)
	kp, err := nkeys.FromSeed(bytes.TrimSpace(seed))
	if err != nil {
		t.Fatal(err)
	}
	clearingUser, _ := kp.PublicKey()
	if !nkeys.IsValidPublicUserKey(clearingUser) {
		t.Fatalf("created seed is not a user seed: %s", clearingUser)
	}
	if !strings.Contains(stderr, "created clearing's NATS user seed "+newSeed) || !strings.Contains(stderr, "3 terminals admitted, 1 revoked left out") {
		t.Errorf("stderr:\n%s", stderr)
	}
	conf, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("configuration:\n%s", conf)
	want := map[string]*server.Permissions{clearingUser: nil}
	for id, k := range natsTestTerminals {
		u, err := fare.NATSUserKey(k.Public().(ed25519.PublicKey), id)
		if err != nil {
			t.Fatal(err)
		}
		if id == "bus-2" {
			if bytes.Contains(conf, []byte(u)) {
				t.Errorf("revoked bus-2's NKey %s in the configuration", u)
			}
			continue
		}
		if !bytes.Contains(conf, []byte(u)) {
			t.Errorf("%s's NKey %s not in the configuration", id, u)
		}
		pub, sub := fare.TerminalPermissions(strings.Split(id, "-")[0], id)
		want[u] = &server.Permissions{Publish: &server.SubjectPermission{Allow: pub}, Subscribe: &server.SubjectPermission{Allow: sub}}
	}
	opts, err := server.ProcessConfigFile(out)
	if err != nil {
		t.Fatalf("nats-server cannot parse it: %v", err)
	}
	if len(opts.Nkeys) != len(want) || len(opts.Users) != 0 || opts.NoAuthUser != "" {
		t.Errorf("%d NKey users, %d other users, no_auth_user %q; want %d NKey users only", len(opts.Nkeys), len(opts.Users), opts.NoAuthUser, len(want))
	}
	for _, u := range opts.Nkeys {
		w, ok := want[u.Nkey]
		// Clearing in its account, the terminals in theirs (they may not
		// have the server write answers into clearing's streams).
		wantAccount := clearing.TerminalsAccount
		if w == nil {
			wantAccount = clearing.ClearingAccount
		}
		if ok && (u.Account == nil || u.Account.Name != wantAccount) {
			t.Errorf("user %s in account %v, want %s", u.Nkey, u.Account, wantAccount)
		}
		switch {
		case !ok:
			t.Errorf("unexpected user %s", u.Nkey)
		case w == nil:
			if u.Permissions != nil {
				t.Errorf("clearing's user has permissions %+v, want full access", u.Permissions)
			}
		case u.Permissions == nil || !slices.Equal(u.Permissions.Publish.Allow, w.Publish.Allow) || !slices.Equal(u.Permissions.Subscribe.Allow, w.Subscribe.Allow) ||
			u.Permissions.Publish.Deny != nil || u.Permissions.Subscribe.Deny != nil:
			t.Errorf("user %s permissions %+v, want %+v", u.Nkey, u.Permissions, w)
		}
	}
	if opts.MaxSubs != 512 || opts.MaxControlLine != 1024 || opts.MaxClosedClients != 16 {
		t.Errorf("max_subscriptions %d, max_control_line %d, max_closed_clients %d; want the embedded server's 512, 1024, 16", opts.MaxSubs, opts.MaxControlLine, opts.MaxClosedClients)
	}
	if opts.Host != "127.0.0.1" || opts.Port != 4333 || !opts.JetStream || opts.StoreDir != jsDir || opts.TLSConfig == nil || opts.AllowNonTLS || opts.MaxPayload != 64<<10 {
		t.Errorf("listen %s:%d, jetstream %v %q, tls %v (non-TLS allowed %v), max_payload %d", opts.Host, opts.Port, opts.JetStream, opts.StoreDir, opts.TLSConfig != nil, opts.AllowNonTLS, opts.MaxPayload)
	}

	// A mistyped seed path would make a new clearing user and lock the
	// running clearing out at the next reload: refused, nothing written.
	typo := filepath.Join(files, "clearing2.nk")
	if _, _, err := runNATSCmd(t, append(args, "--out", out, "--clearing-seed", typo)...); err == nil || !strings.Contains(err.Error(), "would replace "+clearingUser) {
		t.Fatalf("a new seed over a configuration admitting another clearing user: %v, want refused naming %s", err, clearingUser)
	}
	if _, err := os.Stat(typo); err == nil {
		t.Fatal("the mistyped seed was created")
	}
	if again, _ := os.ReadFile(out); !bytes.Equal(again, conf) {
		t.Fatal("the configuration changed")
	}

	// Again to stdout with the now existing seed, from the files' directory
	// with relative paths: the same user, the same configuration (paths are
	// written absolute: nats-server resolves them against its working
	// directory, not the configuration file's), the seed untouched.
	t.Chdir(files)
	stdout, stderr, err = runNATSCmd(t, "config", "--data", data, "--clearing-seed", newSeed, "--listen", "127.0.0.1:4333",
		"--jetstream-dir", "jetstream", "--tls-cert", "server.pem", "--tls-key", "server-key.pem")
	if err != nil {
		t.Fatalf("nats config to stdout: %v\n%s", err, stderr)
	}
	if stdout != string(conf) {
		t.Errorf("stdout differs from the first run's file:\n%s", stdout)
	}
	if strings.Contains(stderr, "created") {
		t.Errorf("existing seed recreated: %s", stderr)
	}
	if again, _ := os.ReadFile(newSeed); !bytes.Equal(again, seed) {
		t.Error("seed file changed")
	}

	// Only the users: a note that clearing needs JetStream, and a warning
	// for a seed others can read.
	if err := os.Chmod(newSeed, 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, err = runNATSCmd(t, "config", "--data", data, "--clearing-seed", newSeed)
	if err != nil {
		t.Fatalf("nats config: %v\n%s", err, stderr)
	}
	for _, s := range []string{"listen", "tls {", "jetstream {"} {
		if strings.Contains(stdout, s) {
			t.Errorf("%q in a configuration without the flag:\n%s", s, stdout)
		}
	}
	if !strings.Contains(stdout, clearingUser) || !strings.Contains(stderr, "no --jetstream-dir") || !strings.Contains(stderr, "readable by others") {
		t.Errorf("stdout:\n%s\nstderr:\n%s", stdout, stderr)
	}

	// Verifiers: admitted with a verifier's permissions for the partitions
	// given, and nothing more; a key without partitions, or not a user
	// key, is refused.
	vkp, _ := nkeys.CreateUser()
	verifier, _ := vkp.PublicKey()
	for _, b := range [][]string{
		{"--verifier-key", "0=" + verifier},                                        // no partitions
		{"--verifier-key", verifier, "--verifier-partitions", "2"},                 // no partition named: it would be every one
		{"--verifier-key", "2=" + verifier, "--verifier-partitions", "2"},          // partitions are 0 and 1
		{"--verifier-key", "x=" + verifier, "--verifier-partitions", "2"},          // not a number
		{"--verifier-key", "0=" + clearingUser[:10], "--verifier-partitions", "2"}, // not a key
		{"--verifier-partitions", "65"},
	} {
		if _, _, err := runNATSCmd(t, append([]string{"config", "--data", data, "--clearing-seed", newSeed}, b...)...); err == nil {
			t.Errorf("nats config %v accepted", b)
		}
	}
	vconf := filepath.Join(files, "verifiers.conf")
	if _, stderr, err = runNATSCmd(t, "config", "--data", data, "--clearing-seed", newSeed, "--verifier-key", "1="+verifier, "--verifier-partitions", "2", "--out", vconf); err != nil {
		t.Fatalf("nats config with a verifier: %v\n%s", err, stderr)
	}
	vopts, err := server.ProcessConfigFile(vconf)
	if err != nil {
		t.Fatalf("nats-server cannot parse it: %v", err)
	}
	vpub, vsub := clearing.VerifierPermissions(verifier, []int{1})
	found := false
	for _, u := range vopts.Nkeys {
		if u.Nkey != verifier {
			continue
		}
		found = true
		if u.Permissions == nil || !slices.Equal(u.Permissions.Publish.Allow, vpub) || !slices.Equal(u.Permissions.Subscribe.Allow, vsub) {
			t.Errorf("verifier's permissions %+v, want publish %v subscribe %v", u.Permissions, vpub, vsub)
		}
	}
	if !found || len(vopts.Nkeys) != len(want)+1 {
		t.Errorf("verifier admitted %v, %d users, want %d", found, len(vopts.Nkeys), len(want)+1)
	}

	// Another existing seed over a configuration admitting the first
	// clearing user: written (a planned change of user), with a warning
	// that the running clearing is refused at the next reload.
	okp, _ := nkeys.CreateUser()
	oseed, _ := okp.Seed()
	otherSeed := filepath.Join(files, "other.nk")
	if err := os.WriteFile(otherSeed, append(oseed, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	otherUser, _ := okp.PublicKey()
	if _, stderr, err = runNATSCmd(t, "config", "--data", data, "--clearing-seed", otherSeed, "--out", vconf); err != nil ||
		!strings.Contains(stderr, "admitted clearing user "+clearingUser+"; it now admits "+otherUser) {
		t.Fatalf("another clearing seed over %s: %v\n%s\nwant written, with a warning naming both users", vconf, err, stderr)
	}
}

func TestNATSConfigUser(t *testing.T) {
	dir := t.TempDir()
	k := natsTestTerminals["metro-1"]
	keyFile := filepath.Join(dir, "metro-1.key")
	if err := os.WriteFile(keyFile, []byte(hex.EncodeToString(k.Seed())+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pub := k.Public().(ed25519.PublicKey)
	want, err := fare.NATSUserKey(pub, "metro-1")
	if err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.key")
	cases := []struct {
		name    string
		args    []string
		wantErr string // "" when the NKey must be printed
	}{
		{"key file", []string{"--id", "metro-1", "--key", keyFile}, ""},
		{"public key, base64", []string{"--id", "metro-1", "--public-key", base64.StdEncoding.EncodeToString(pub)}, ""},
		{"public key, hex", []string{"--id", "metro-1", "--public-key", hex.EncodeToString(pub)}, ""},
		{"no --id", []string{"--key", keyFile}, "--id"},
		{"an id that is no subject token", []string{"--id", "metro.1", "--key", keyFile}, "--id \"metro.1\""},
		{"neither key", []string{"--id", "metro-1"}, "exactly one of --key"},
		{"both keys", []string{"--id", "metro-1", "--key", keyFile, "--public-key", hex.EncodeToString(pub)}, "exactly one of --key"},
		{"a missing key file", []string{"--id", "metro-1", "--key", missing}, "no such file"},
		{"not a key file", []string{"--id", "metro-1", "--key", filepath.Join("..", "..", "go.mod")}, "not a terminal key file"},
		{"a bad public key", []string{"--id", "metro-1", "--public-key", "abc"}, "--public-key"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			stdout, _, err := runNATSCmd(t, append([]string{"user"}, c.args...)...)
			if c.wantErr == "" {
				if err != nil || strings.TrimSpace(stdout) != want {
					t.Fatalf("got %q, %v; want %s", stdout, err, want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.wantErr) || stdout != "" {
				t.Fatalf("got %q, %v; want an error containing %q", stdout, err, c.wantErr)
			}
			t.Logf("%v", err)
		})
	}
	if _, err := os.Stat(missing); err == nil {
		t.Error("nats user created a key file")
	}
	// A different id gives a different user for the same key.
	if other, _ := fare.NATSUserKey(pub, "metro-2"); other == want {
		t.Error("the NKey does not depend on the terminal id")
	}
}
