package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/ethereum/go-ethereum/crypto"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/ledger"
)

// TestLedgerRoleCommands drives the admin's and operators' commands against
// an embedded chain: admission, registration from a flag and from a registry
// file, a refused and an accepted revocation, acknowledge, dispute, status.
func TestLedgerRoleCommands(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	data := t.TempDir()
	// A chain with metro admitted and one batch committed, as a clearing run leaves it.
	e, err := ledger.OpenEmbedded(ctx, filepath.Join(data, "chain"))
	if err != nil {
		t.Fatal(err)
	}
	metroAcct, err := e.OperatorAccount(ctx, "metro")
	if err != nil {
		t.Fatal(err)
	}
	// A registration clearing does not follow, sent past the CLI's check
	// (the contract takes any id): status lists it apart.
	var badKey [32]byte
	badKey[0] = 9
	if _, err := metroAcct.RegisterTerminals(ctx, []ledger.TerminalRegistration{{ID: "metro bad", Stop: "central", PublicKey: badKey, KeyProof: make([]byte, 64)}}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if _, err := e.CommitBatch(ctx, ledger.Batch{ID: 1, Root: [32]byte{1}, EventCount: 1, PeriodStart: now, PeriodEnd: now,
		Amounts: []ledger.OperatorAmount{{Operator: "metro", Net: 250}}}); err != nil {
		t.Fatal(err)
	}
	e.Close()

	keyOf := func(b byte) ed25519.PrivateKey {
		seed := make([]byte, ed25519.SeedSize)
		seed[0] = b
		return ed25519.NewKeyFromSeed(seed)
	}
	pub := func(b byte) ed25519.PublicKey { return keyOf(b).Public().(ed25519.PublicKey) }
	proof := func(b byte, id, op, stop string) string {
		return "0x" + hex.EncodeToString(provenTerminal(keyOf(b), id, op, stop).KeyProof)
	}
	reg := &clearing.Registry{Currency: "EUR",
		Operators: []clearing.OperatorConfig{{ID: "metro", FlatFare: 250}, {ID: "bus", FlatFare: 180}},
		Terminals: []clearing.TerminalPublicKey{
			provenTerminal(keyOf(2), "bus-1", "bus", "depot"),
			provenTerminal(keyOf(3), "bus-2", "bus", "depot"),
			provenTerminal(keyOf(4), "metro-9", "metro", "central"),
		}}
	regFile := filepath.Join(t.TempDir(), "registry.json")
	if err := reg.Save(regFile); err != nil {
		t.Fatal(err)
	}
	// A registry written before key proofs: nothing of it is sent.
	unproven := *reg
	unproven.Terminals = []clearing.TerminalPublicKey{{ID: "bus-3", Operator: "bus", Stop: "depot", PublicKey: pub(8)}}
	unprovenFile := filepath.Join(t.TempDir(), "unproven.json")
	if err := unproven.Save(unprovenFile); err != nil {
		t.Fatal(err)
	}
	reason := filepath.Join(t.TempDir(), "reason.txt")
	os.WriteFile(reason, []byte("bus-2 taps of 21 Nov missing\n"), 0o600)
	blank := filepath.Join(t.TempDir(), "blank.txt")
	os.WriteFile(blank, []byte(" \n\t\n"), 0o600)
	metroKey := filepath.Join(data, "chain", "operators", "metro.key")
	adminKey := filepath.Join(data, "chain", "admin.key")
	newBusKey, err := crypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	newBus := crypto.PubkeyToAddress(newBusKey.PublicKey)

	steps := []struct {
		args    []string
		want    string // in the output
		wantErr error
		errHas  string // in the error
	}{
		{[]string{"admit", "--operator", "bus"}, "operator bus admitted, custodial account 0x", nil, ""},
		{[]string{"register-terminals", "--operator", "metro", "--terminal", "metro-1", "--stop", "central", "--public-key", base64.StdEncoding.EncodeToString(pub(1)), "--key-proof", proof(1, "metro-1", "metro", "central")}, "1 terminals registered for metro", nil, ""},
		// Key squatting, from bus's side: metro's published proof for its
		// gate, or none, does not register the gate's key for bus.
		{[]string{"register-terminals", "--operator", "bus", "--terminal", "bus-sq", "--stop", "central", "--public-key", "0x" + hex.EncodeToString(pub(5)), "--key-proof", proof(5, "metro-5", "metro", "central")}, "", nil, "key proof does not verify: not the key's signature of operator bus's terminal bus-sq"},
		{[]string{"register-terminals", "--operator", "bus", "--terminal", "metro-5", "--stop", "central", "--public-key", "0x" + hex.EncodeToString(pub(5)), "--key-proof", proof(5, "metro-5", "metro", "central")}, "", nil, "key proof does not verify"},
		{[]string{"register-terminals", "--operator", "bus", "--terminal", "bus-sq", "--stop", "central", "--public-key", "0x" + hex.EncodeToString(pub(5))}, "", nil, "--terminal needs --stop, --public-key and --key-proof"},
		{[]string{"register-terminals", "--operator", "bus", "--terminal", "bus-sq", "--stop", "central", "--public-key", "0x" + hex.EncodeToString(pub(5)), "--key-proof", "0xzz"}, "", nil, "--key-proof: key proof \"0xzz\": want 0x and 64 bytes in hex"},
		{[]string{"register-terminals", "--operator", "bus", "--registry", unprovenFile}, "", nil, "terminal bus-3 has no key_proof"},
		// Already on chain, otherwise than the entry says: registering
		// again cannot mend it, and says how to.
		{[]string{"register-terminals", "--operator", "metro", "--terminal", "metro-1", "--stop", "west", "--public-key", "0x" + hex.EncodeToString(pub(1)), "--key-proof", proof(1, "metro-1", "metro", "west")}, "", nil, "terminal metro-1 is registered at another stop than west"},
		{[]string{"register-terminals", "--operator", "bus", "--terminal", "metro-1", "--stop", "central", "--public-key", "0x" + hex.EncodeToString(pub(9)), "--key-proof", proof(9, "metro-1", "bus", "central")}, "", nil, "terminal id metro-1 is registered to operator metro (ids are first come first served"},
		{[]string{"register-terminals", "--operator", "metro", "--registry", unprovenFile}, "", nil, "has no terminal of operator metro"},
		{[]string{"register-terminals", "--operator", "bus", "--registry", regFile}, "2 terminals registered for bus, 0 already on chain", nil, ""},
		{[]string{"register-terminals", "--operator", "bus", "--registry", regFile}, "0 terminals registered for bus, 2 already on chain", nil, ""},
		{[]string{"register-terminals", "--operator", "metro", "--terminal", "m", "--stop", "s", "--public-key", "not-a-key", "--key-proof", proof(1, "m", "metro", "s")}, "", nil, `public key "not-a-key"`},
		// One key, one terminal: metro-1's key under another id.
		{[]string{"register-terminals", "--operator", "metro", "--terminal", "metro-2", "--stop", "central", "--public-key", base64.StdEncoding.EncodeToString(pub(1)), "--key-proof", proof(1, "metro-2", "metro", "central")}, "", nil, "is terminal metro-1's already: one key, one terminal"},
		{[]string{"revoke-terminal", "--operator", "bus", "--terminal", "metro-1"}, "", ledger.ErrNotTerminalOwner, ""},
		{[]string{"revoke-terminal", "--operator", "metro", "--terminal", "metro-1"}, "revoked metro-1: tx 0x", nil, ""},
		{[]string{"acknowledge", "--operator", "metro", "--batch", "1"}, "metro: batch 1 acknowledged", nil, ""},
		{[]string{"acknowledge", "--operator", "metro", "--batch", "1"}, "", ledger.ErrAlreadyAnswered, ""},
		{[]string{"dispute", "--operator", "metro", "--batch", "1", "--reason", reason}, "", nil, "metro's answer to batch 1 on record is acknowledged, and answers are final"},
		// Flags that say one operator and a key that signs as another:
		// refused before anything is sent (bus's dispute below still goes
		// through, so nothing was answered for bus).
		{[]string{"dispute", "--operator", "bus", "--batch", "1", "--reason", reason, "--eth-key", metroKey}, "", nil, "is not operator bus's"},
		{[]string{"register-terminals", "--operator", "bus", "--terminal", "bus-7", "--stop", "depot", "--public-key", base64.StdEncoding.EncodeToString(pub(7)), "--key-proof", proof(7, "bus-7", "bus", "depot"), "--eth-key", metroKey}, "", nil, "is not operator bus's"},
		{[]string{"revoke-terminal", "--operator", "bus", "--terminal", "bus-1", "--eth-key", metroKey}, "", nil, "is not operator bus's"},
		{[]string{"acknowledge", "--operator", "../admin", "--batch", "1"}, "", nil, "--operator"},
		{[]string{"dispute", "--operator", "bus", "--batch", "1", "--reason", blank}, "", nil, "is empty"},
		{[]string{"dispute", "--operator", "bus", "--batch", "1", "--reason", reason}, "bus: batch 1 disputed (reason sha256 0x", nil, ""},
		{[]string{"acknowledge", "--operator", "bus", "--batch", "1"}, "", nil, "bus's answer to batch 1 on record is disputed (reason sha256 0x"},
		{[]string{"acknowledge", "--operator", "tram", "--batch", "1"}, "", nil, ""}, // no such operator
		// An operator's key stolen: the admin moves it to a new account,
		// and the old key (bus's custodial one) acts for no one.
		// The embedded chain keeps the operators' keys: a new one is made
		// in the old one's place, and funded; with --eth-key an account
		// is given.
		{[]string{"replace-operator", "--operator", "bus", "--account", newBus.Hex()}, "", nil, "--account: on the embedded chain"},
		{[]string{"replace-operator", "--operator", "bus", "--eth-key", metroKey, "--account", "nope"}, "", nil, "--account \"nope\" is not an address"},
		{[]string{"replace-operator", "--operator", "bus", "--eth-key", metroKey, "--account", newBus.Hex()}, "", ledger.ErrNotAdmin, ""},
		{[]string{"replace-operator", "--operator", "bus", "--eth-key", adminKey, "--account", metroAcct.Address().Hex()}, "", ledger.ErrOperatorExists, ""},
		{[]string{"replace-operator", "--operator", "bus"}, "operator bus moved to a new custodial account 0x", nil, ""},
		// The stolen key acts for no one; the new one, funded, acts for bus.
		{[]string{"revoke-terminal", "--operator", "bus", "--terminal", "bus-1"}, "revoked bus-1: tx 0x", nil, ""},
		{[]string{"status"}, "terminal metro-1 operator metro stop central registered in block", nil, ""},
	}
	for _, s := range steps {
		out, err := runCLI(t, append(append([]string{"ledger"}, s.args...), "--data", data)...)
		switch {
		case s.errHas != "":
			if err == nil || !strings.Contains(err.Error(), s.errHas) {
				t.Fatalf("%v: err %v, want one saying %q\n%s", s.args, err, s.errHas, out)
			}
		case s.wantErr != nil:
			if !errors.Is(err, s.wantErr) {
				t.Fatalf("%v: err %v, want %v\n%s", s.args, err, s.wantErr, out)
			}
		case s.want == "":
			if err == nil {
				t.Fatalf("%v: accepted\n%s", s.args, out)
			}
		default:
			if err != nil || !strings.Contains(out, s.want) {
				t.Fatalf("%v: %v\n%s\nwant %q", s.args, err, out, s.want)
			}
		}
		t.Logf("%v: %v %s", s.args, err, strings.TrimSpace(out))
	}
	// bus's replaced key, kept beside the new one, acts for no operator.
	kept, _ := filepath.Glob(filepath.Join(data, "chain", "operators", "bus.key.replaced-*"))
	if len(kept) != 1 {
		t.Fatalf("replaced keys kept: %v, want bus's old one", kept)
	}
	if out, err := runCLI(t, "ledger", "revoke-terminal", "--data", data, "--operator", "bus", "--terminal", "bus-2", "--eth-key", kept[0]); err == nil || !strings.Contains(err.Error(), "is not operator bus's") {
		t.Fatalf("revoke with bus's replaced key: %v\n%s", err, out)
	}
	out, _ := runCLI(t, "ledger", "status", "--data", data, "--registry", regFile)
	if strings.Contains(out, "bus-7") {
		t.Errorf("bus-7 was registered with metro's key for bus:\n%s", out)
	}
	for _, want := range []string{"revoked in block", "operator metro account 0x", `terminal "metro bad" operator "metro" stop "central" key 0x09`, "NOT FOLLOWED by clearing: terminal id", "balance 250 (2.50 EUR) answers [1 acknowledged]", "answers [1 disputed]", "batches committed: 1"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	// Without a registry the currency is unknown, and says so.
	if out, _ := runCLI(t, "ledger", "status", "--data", data); !strings.Contains(out, "balance 250 minor units (give --registry for their currency)") {
		t.Errorf("status without a registry:\n%s", out)
	}
}

// TestParsePublicKey reads a terminal key in each form an operator may hold
// it, and names what is wrong with the rest.
func TestParsePublicKey(t *testing.T) {
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	hexKey := fmt.Sprintf("%x", []byte(pub))
	for _, tc := range []struct {
		name, in string
		ok       bool
	}{
		{"0x hex, as the registry writes it", "0x" + hexKey, true},
		{"bare hex", hexKey, true},
		{"base64, as older registry files hold it", base64.StdEncoding.EncodeToString(pub), true},
		{"surrounding spaces", "  0x" + hexKey + "\n", true},
		{"31 bytes", "0x" + hexKey[2:], false},
		{"33 bytes", "0x" + hexKey + "00", false},
		{"not hex after 0x", "0x" + strings.Repeat("zz", 32), false},
		{"empty", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parsePublicKey(tc.in)
			if !tc.ok {
				if err == nil || !strings.Contains(err.Error(), "public key") {
					t.Fatalf("%q: want an error naming the public key, got %v", tc.in, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got[:], pub) {
				t.Fatalf("%q read as %x", tc.in, got)
			}
		})
	}
}

// TestLedgerKeygenAndAddress: a new key file is made once (never over
// another), its address printed, and read back by `ledger address`, which
// names what is wrong with a file that holds no key.
func TestLedgerKeygenAndAddress(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "tram.key")
	out, err := runCLI(t, "ledger", "keygen", "--out", keyFile)
	if err != nil {
		t.Fatalf("keygen: %v\n%s", err, out)
	}
	_, addr, ok := strings.Cut(strings.TrimSpace(out), "address ")
	if !ok || !strings.HasPrefix(addr, "0x") || len(addr) != 42 {
		t.Fatalf("keygen printed %q, want the address", out)
	}
	if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, mode %v; want 0600", err, fi.Mode())
	}
	key, err := ledger.ReadKeyFile(keyFile)
	if err != nil || ledger.KeyAddress(&key.PublicKey).Hex() != addr {
		t.Fatalf("the key file reads back as %v (%v), printed %s", key, err, addr)
	}
	before, _ := os.ReadFile(keyFile)
	junk := filepath.Join(dir, "junk.key")
	os.WriteFile(junk, []byte("not a key\n"), 0o600)
	for _, c := range []struct {
		name string
		args []string
		want string // in the output, or in the error if wantErr
		err  bool
	}{
		{"address", []string{"ledger", "address", "--eth-key", keyFile}, "address " + addr, false},
		{"keygen over a key", []string{"ledger", "keygen", "--out", keyFile}, "exists: not overwritten", true},
		{"keygen without --out", []string{"ledger", "keygen"}, "--out", true},
		{"address of junk", []string{"ledger", "address", "--eth-key", junk}, "invalid hex", true},
		{"address of no file", []string{"ledger", "address", "--eth-key", filepath.Join(dir, "none.key")}, "no such file", true},
		{"address without --eth-key", []string{"ledger", "address"}, "--eth-key", true},
	} {
		out, err := runCLI(t, c.args...)
		switch {
		case c.err && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: %v, want an error saying %q\n%s", c.name, err, c.want, out)
		case !c.err && (err != nil || !strings.Contains(out, c.want)):
			t.Errorf("%s: %v, want %q in\n%s", c.name, err, c.want, out)
		}
	}
	if after, _ := os.ReadFile(keyFile); !bytes.Equal(before, after) {
		t.Fatal("keygen overwrote an existing key")
	}
}

// TestLedgerCommandsOnANodeThatNeverAnswers: the chain commands and
// clearing's start give up on a node that takes the connection and never
// answers, naming it, instead of hanging without a word (an outside test
// saw `ledger status`, `ledger acknowledge` and `clearing --eth-rpc` hang
// until killed): the dial within ledger.DialTimeout, each role command
// within its --timeout.
func TestLedgerCommandsOnANodeThatNeverAnswers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
			go io.Copy(io.Discard, c)
		}
	}()
	hang := "http://" + ln.Addr().String()
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "bus.key")
	if err := os.WriteFile(keyFile, []byte(strings.Repeat("ab", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	contract := "0x" + strings.Repeat("00", 19) + "01"
	chain := []string{"--eth-rpc", hang, "--contract", contract}
	reg := `{"currency": "EUR", "operators": [{"id": "bus", "name": "Bus", "flat_fare": 180}], "terminals": []}`
	if err := os.WriteFile(filepath.Join(dir, "registry.json"), []byte(reg), 0o600); err != nil {
		t.Fatal(err)
	}

	// --timeout bounds the whole command, whatever it waits on.
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"status", append([]string{"ledger", "status", "--timeout", "500ms"}, chain...)},
		{"acknowledge", append([]string{"ledger", "acknowledge", "--operator", "bus", "--batch", "1", "--eth-key", keyFile, "--timeout", "500ms"}, chain...)},
	} {
		start := time.Now()
		out, err := runCLI(t, tc.args...)
		if took := time.Since(start); err == nil || took > 5*time.Second || !strings.Contains(err.Error(), hang) ||
			!strings.Contains(err.Error(), "did not answer in time") {
			t.Errorf("%s on a node that never answers: %v after %s; want it to give up naming %s\n%s", tc.name, err, took.Round(time.Millisecond), hang, out)
		}
	}
	if out, err := runCLI(t, append([]string{"ledger", "status", "--timeout", "0s"}, chain...)...); exitCode(err) != exitUsage || !strings.Contains(fmt.Sprint(err), "--timeout") {
		t.Errorf("status --timeout 0s: %v (exit %d), want a usage error\n%s", err, exitCode(err), out)
	}

	// The dial's own bound: clearing's start has no --timeout.
	prev := ledger.DialTimeout
	ledger.DialTimeout = 500 * time.Millisecond
	t.Cleanup(func() { ledger.DialTimeout = prev })
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"status", append([]string{"ledger", "status"}, chain...)},
		{"clearing", append([]string{"clearing", "--data", filepath.Join(dir, "clearing"), "--registry", filepath.Join(dir, "registry.json"),
			"--nats-listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--eth-key", keyFile}, chain...)},
	} {
		start := time.Now()
		out, err := runCLI(t, tc.args...)
		if took := time.Since(start); err == nil || took > 10*time.Second || !strings.Contains(err.Error(), hang) ||
			!strings.Contains(err.Error(), "did not answer within 500ms") {
			t.Errorf("%s on a node that never answers: %v after %s; want the dial to give up naming %s\n%s", tc.name, err, took.Round(time.Millisecond), hang, out)
		}
	}
}
