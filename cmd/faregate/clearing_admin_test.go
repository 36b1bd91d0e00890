package main

import (
	"bytes"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/fare"
)

// runClearingCmd runs `faregate clearing ARGS...` and returns its stdout and
// stderr apart.
func runClearingCmd(t *testing.T, stdin string, args ...string) (string, string, error) {
	t.Helper()
	root := newRootCmd()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetIn(strings.NewReader(stdin))
	root.SetArgs(append([]string{"clearing"}, args...))
	err := root.Execute()
	return out.String(), errOut.String(), err
}

// TestTokenIssueNotesAStorelessDir: a token issued into a directory that
// holds no clearing store yet (before clearing's first start, or a
// mistyped --data) says which clearing will read it; one issued into a
// clearing's directory says nothing more.
func TestTokenIssueNotesAStorelessDir(t *testing.T) {
	typo := filepath.Join(t.TempDir(), "clearnig")
	out, errOut, err := runClearingCmd(t, "", "token", "issue", "--data", typo, "--role", "auditor", "--name", "a")
	if err != nil || !strings.HasPrefix(out, "fgt_") || !strings.Contains(errOut, "holds no clearing store yet") || !strings.Contains(errOut, typo) {
		t.Errorf("a token into %s: %v\nstdout %q\nstderr %q", typo, err, out, errOut)
	}
}

func TestClearingTokenCommands(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "clearing")
	tokenFile := filepath.Join(data, clearing.APITokenFile)
	reg, err := clearing.ParseRegistry([]byte(`{"currency": "EUR", "operators": [{"id": "metro", "name": "Metro", "flat_fare": 250}]}`))
	if err != nil {
		t.Fatal(err)
	}
	regFile := filepath.Join(dir, "registry.json")
	if err := reg.Save(regFile); err != nil {
		t.Fatal(err)
	}
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := kp.Seed()
	seedFile := filepath.Join(dir, "clearing.nk")
	if err := os.WriteFile(seedFile, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	notSeed := filepath.Join(dir, "t1.key") // a gate's key, not an NKey seed
	if err := os.WriteFile(notSeed, []byte("0x"+strings.Repeat("ab", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"token", "issue", "--role", "auditor", "--name", "a"}, "--data DIR"},
		{[]string{"token", "issue", "--data", data, "--api-tokens", tokenFile, "--role", "auditor", "--name", "a"}, "not both"},
		{[]string{"token", "issue", "--data", data, "--name", "a"}, `"role" not set`},
		{[]string{"token", "issue", "--data", data, "--role", "admin", "--name", "a"}, `unknown role "admin"`},
		{[]string{"token", "issue", "--data", data, "--role", "operator", "--name", "a"}, "--role operator needs --operator"},
		{[]string{"token", "issue", "--data", data, "--role", "auditor", "--operator", "metro", "--name", "a"}, "drop --operator"},
		{[]string{"token", "issue", "--data", data, "--role", "operator", "--operator", "me tro", "--name", "a"}, `--operator "me tro"`},
		{[]string{"token", "issue", "--data", data, "--role", "auditor"}, `"name" not set`},
		{[]string{"token", "issue", "--data", data, "--role", "auditor", "--name", "two words"}, `token name "two words"`},
		{[]string{"token", "issue", "--data", data, "--role", "operator", "--operator", "bus", "--name", "a", "--registry", regFile}, `--operator "bus" is not in the registry`},
		{[]string{"token", "issue", "--data", data, "--role", "operator", "--operator", "metro", "--name", "a", "--registry", filepath.Join(dir, "none.json")}, "--registry"},
		{[]string{"token", "issue", "--data", data, "--role", "auditor", "--name", "a", "extra"}, "unknown command"},
		{[]string{"token", "list"}, "--data DIR"},
		{[]string{"token", "list", "--data", filepath.Join(dir, "mistyped")}, "is --data clearing's data directory?"},
		{[]string{"token", "revoke", "--data", data}, `"name" not set`},
		{[]string{"token", "revoke", "--data", data, "--name", "nobody"}, `no token named "nobody"`},
		{[]string{"tokn"}, "unknown command"},
		{[]string{"--http-tls-cert", "cert.pem"}, "--http-tls-cert and --http-tls-key go together"},
		{[]string{"--http-tls-key", "key.pem"}, "--http-tls-cert and --http-tls-key go together"},
		{[]string{"--acquirer", "visa"}, `--acquirer "visa": want simulated`},
		{[]string{"--acquirer", "simulated"}, "--acquirer bills priced fare days: it needs --feed"},
		{[]string{"--acquirer", "simulated", "--decline-rate", "1.5"}, "--decline-rate 1.5: want 0 to 1"},
		{[]string{"--decline-rate", "0.5"}, "--decline-rate goes with --acquirer simulated"},
		{[]string{"--acquirer-seed", "7"}, "--acquirer-seed goes with --acquirer simulated"},
		{[]string{"--eth-key", "k.key"}, "--eth-key goes with --eth-rpc"},
		{[]string{"--contract", "0x0000000000000000000000000000000000000001"}, "--contract goes with --eth-rpc"},
		{[]string{"--eth-rpc", "http://127.0.0.1:1"}, "--eth-rpc needs --eth-key"},
		{[]string{"--eth-rpc", "127.0.0.1:8545", "--eth-key", "k.key"}, "want a JSON-RPC URL"},
		{[]string{"--eth-rpc", "http://127.0.0.1:252019", "--eth-key", "k.key"}, "PORT 1 to 65535"},
		{[]string{"--eth-rpc", "htp://user:s3cret@127.0.0.1:1", "--eth-key", "k.key"}, `"htp://user:xxxxx@127.0.0.1:1": want a JSON-RPC URL`},
		{[]string{"--eth-rpc", "http://127.0.0.1:1", "--eth-key", "k.key", "--contract", "0xzz"}, "--contract \"0xzz\": want a 0x address"},
		// NATS credentials alike (an outside review found them printed).
		{[]string{"--nats", "nats://u:s3cret@h:99999", "--nats-seed", "vk.nk"}, `--nats "nats://u:xxxxx@h:99999": port 99999`},
		{[]string{"--nats", "nats://127.0.0.1:4222,nats://s3cret-token@[::1:4222", "--nats-seed", "vk.nk"}, `nats://xxxxx@[::1:4222`},
		// A file that is no seed, refused before anything is written (the
		// ledger opened and a contract deployed, before).
		{[]string{"--data", data, "--registry", regFile, "--http", "", "--nats", "nats://127.0.0.1:1", "--nats-seed", notSeed}, "--nats-seed " + notSeed + ": "},
		// No NATS server where --nats says: refused before a contract is
		// deployed and the data dir written (an outside re-check).
		{[]string{"--data", data, "--registry", regFile, "--http", "", "--nats", "nats://u:s3cret@127.0.0.1:1", "--nats-seed", seedFile}, "--nats nats://u:xxxxx@127.0.0.1:1: no NATS server answers"},
		{[]string{"--http", "notanaddr"}, "--http \"notanaddr\": want HOST:PORT"},
		{[]string{"--http", "127.0.0.1:99999"}, "port \"99999\" is not 0 to 65535"},
		{[]string{"--rider-cache", "-1"}, "--rider-cache -1: want 0 (none) or more"},
		{[]string{"--period", "1ns"}, "--period 1ns: want a settlement period of at least 100ms"},
		{[]string{"--data", regFile, "--registry", regFile}, "--data " + regFile + ": a file, not a directory"},
		{[]string{"--close-after", "0s"}, "--close-after 0s: want a positive duration"},
		{[]string{"--face-model", "foo/v1"}, `--face-model "foo/v1": clearing screens templates of dlib_resnet_v1/shape5`},
		{[]string{"--next-feed", "feed2"}, "--next-feed and --next-feed-from go together"},
		{[]string{"--next-feed", "feed2", "--next-feed-from", "2027-01-01T04:00:00+01:00"}, "give --feed too"},
		{[]string{"--data", data, "--registry", regFile, "--http", "", "--feed", "../../clearing/journeys/testdata/city", "--next-feed", "../../clearing/journeys/testdata/city/",
			"--next-feed-from", time.Now().AddDate(0, 1, 0).Format(time.RFC3339)}, "is the same feed version as --feed"},
		{[]string{"--feed", "feed1", "--next-feed", "feed2", "--next-feed-from", "tomorrow"}, `--next-feed-from "tomorrow": want an RFC 3339 time`},
		{[]string{"--data", data, "--registry", regFile, "--http-tls-cert", filepath.Join(dir, "none.pem"), "--http-tls-key", filepath.Join(dir, "none-key.pem")}, "settlement API TLS certificate"},
	} {
		_, _, err := runClearingCmd(t, "", c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("clearing %s: %v, want an error containing %q, no password", strings.Join(c.args, " "), err, c.want)
		}
		if _, err := os.Stat(data); err == nil {
			t.Fatalf("clearing %s: refused, but created %s", strings.Join(c.args, " "), data)
		}
	}

	out, errOut, err := runClearingCmd(t, "", "token", "issue", "--data", data, "--role", "operator", "--operator", "metro", "--name", "metro-recon", "--registry", regFile)
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(out)
	if !strings.HasPrefix(token, clearing.TokenPrefix) || strings.Contains(token, "\n") {
		t.Fatalf("issue printed %q on stdout, want the token alone", out)
	}
	if !strings.Contains(errOut, "shown only this once") {
		t.Errorf("issue does not say the token is shown once: %s", errOut)
	}
	if _, _, err := runClearingCmd(t, "", "token", "issue", "--data", data, "--role", "auditor", "--name", "audit"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := runClearingCmd(t, "", "token", "issue", "--data", data, "--role", "auditor", "--name", "audit"); err == nil || !strings.Contains(err.Error(), `"audit" exists already`) {
		t.Errorf("duplicate name: %v", err)
	}
	raw, _ := os.ReadFile(tokenFile)
	if bytes.Contains(raw, []byte(token)) {
		t.Errorf("token file holds the token itself")
	}
	ts, err := clearing.LoadTokenStore(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	if p, err := ts.Authenticate(token); err != nil || p.Operator != "metro" || p.Role != clearing.RoleOperator {
		t.Errorf("issued token: %+v, %v", p, err)
	}

	out, _, err = runClearingCmd(t, "", "token", "list", "--data", data)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"NAME", "metro-recon", "operator", "metro", "audit", "auditor", "EXPIRES"} {
		if !strings.Contains(out, want) {
			t.Errorf("list lacks %q:\n%s", want, out)
		}
	}
	// Issued by the command, a token expires in 90 days unless --ttl says
	// otherwise; a negative --ttl is a usage error.
	list, err := ts.List()
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range list {
		if d := time.Until(tok.Expires); d < 89*24*time.Hour || d > 90*24*time.Hour {
			t.Errorf("token %q expires %v, want in 90 days", tok.Name, tok.Expires)
		}
	}
	if _, _, err := runClearingCmd(t, "", "token", "issue", "--data", data, "--role", "auditor", "--name", "never", "--ttl", "0"); err != nil {
		t.Fatal(err)
	}
	for _, ttl := range []string{"-1h", "300ms", "59s"} {
		if _, _, err := runClearingCmd(t, "", "token", "issue", "--data", data, "--role", "auditor", "--name", "neg", "--ttl", ttl); err == nil || exitCode(err) != exitUsage {
			t.Errorf("--ttl %s: %v", ttl, err)
		}
	}
	list, _ = ts.List()
	never := slices.IndexFunc(list, func(ti clearing.TokenInfo) bool { return ti.Name == "never" })
	if len(list) != 3 || never < 0 || !list[never].Expires.IsZero() {
		t.Errorf("after --ttl 0: %+v", list)
	}
	if strings.Contains(out, token) || strings.Contains(out, "0x") {
		t.Errorf("list shows a token or hash:\n%s", out)
	}
	if _, _, err := runClearingCmd(t, "", "token", "revoke", "--api-tokens", tokenFile, "--name", "metro-recon"); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.Authenticate(token); err == nil {
		t.Errorf("revoked token still accepted")
	}
	out, _, _ = runClearingCmd(t, "", "token", "list", "--data", data)
	if strings.Contains(out, "metro-recon") {
		t.Errorf("list shows a revoked token:\n%s", out)
	}
}

func TestClearingRiderID(t *testing.T) {
	data := t.TempDir()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--media", "card", "--token", "card-1"}, "--data DIR"},
		{[]string{"--data", data, "--rider-key", "k", "--media", "card", "--token", "card-1"}, "not both"},
		{[]string{"--data", data, "--token", "card-1"}, `"media" not set`},
		{[]string{"--data", data, "--media", "bus", "--token", "card-1"}, `--media "bus": want card or face`},
		{[]string{"--data", data, "--media", "card"}, `"token" not set`},
		{[]string{"--data", data, "--media", "card", "--token", strings.Repeat("x", fare.MaxTokenLen+1)}, "--token"},
		{[]string{"--data", data, "--media", "card", "--token", "card-1"}, "no rider key at " + filepath.Join(data, clearing.RiderKeyFile)},
	} {
		_, _, err := runClearingCmd(t, "", append([]string{"rider-id"}, c.args...)...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("rider-id %s: %v, want an error containing %q", strings.Join(c.args, " "), err, c.want)
		}
	}
	if _, err := os.Stat(filepath.Join(data, clearing.RiderKeyFile)); err == nil {
		t.Fatal("rider-id created a rider key")
	}
	keyFile := filepath.Join(data, clearing.RiderKeyFile)
	os.WriteFile(keyFile, []byte("not hex\n"), 0o600)
	if _, _, err := runClearingCmd(t, "", "rider-id", "--data", data, "--media", "card", "--token", "card-1"); err == nil || !strings.Contains(err.Error(), "want 32 hex-encoded bytes") {
		t.Errorf("bad rider key: %v", err)
	}
	key := bytes.Repeat([]byte{7}, clearing.RiderKeySize)
	os.WriteFile(keyFile, []byte(hex.EncodeToString(key)+"\n"), 0o600)
	out, _, err := runClearingCmd(t, "", "rider-id", "--data", data, "--media", "card", "--token", "card-1")
	if err != nil {
		t.Fatal(err)
	}
	if want := clearing.RiderAccount(key, fare.Card, "card-1"); strings.TrimSpace(out) != want {
		t.Errorf("rider-id printed %q, want %q", out, want)
	}
	out, _, err = runClearingCmd(t, "subject-7\n", "rider-id", "--rider-key", keyFile, "--media", "face", "--token", "-")
	if err != nil {
		t.Fatal(err)
	}
	if want := clearing.RiderAccount(key, fare.Face, "subject-7"); strings.TrimSpace(out) != want {
		t.Errorf("rider-id from stdin printed %q, want %q", out, want)
	}
}

// TestClearingSubcommandUsageErrors: flag problems of the admin, deny,
// enrol and faces commands are usage errors (exit status 64).
func TestClearingSubcommandUsageErrors(t *testing.T) {
	data := t.TempDir()
	for _, args := range [][]string{
		{"token", "issue", "--data", data, "--api-tokens", "f", "--role", "auditor", "--name", "a"},
		{"token", "issue", "--data", data, "--role", "admin", "--name", "a"},
		{"token", "issue", "--data", data, "--role", "auditor", "--operator", "metro", "--name", "a"},
		{"token", "issue", "--data", data, "--role", "operator", "--operator", "me tro", "--name", "a"},
		{"token", "issue", "--data", data, "--role", "auditor", "--name", "two words"},
		{"rider-id", "--data", data, "--rider-key", "k", "--media", "card", "--token", "c"},
		{"rider-id", "--data", data, "--media", "card", "--token", strings.Repeat("x", fare.MaxTokenLen+1)},
		{"deny", "add", "--data", data, "--media", "bus", "--token", "x", "--reason", "r"},
		{"enrol", "add", "--data", data, "--media", "bus", "--token", "x"},
		{"enrol", "revoke", "--data", data, "--rider", "passenger/card/x", "--approved-by", "me"},
		{"enrol", "revoke", "--data", data, "--rider", "passenger/card/0x" + strings.Repeat("a", 32), "--media", "card", "--approved-by", "me"},
		{"faces", "enrol", "--subject", "s", "--card-token", "c", "--card-key", "0x" + strings.Repeat("ab", 16)},
		{"faces", "enrol", "--subject", "s", "--card-key", "0xzz"},
	} {
		_, _, err := runClearingCmd(t, "", args...)
		if err == nil || exitCode(err) != exitUsage {
			t.Errorf("clearing %s: %v (exit %d), want a usage error", strings.Join(args, " "), err, exitCode(err))
		}
	}
}
