package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/faregate/faregate/terminal"
)

// TestTerminalDenySeed: the --deny seed is one card token per line, each
// held to the tap line's check; blank lines and # comments are skipped. A
// line that is not one such token is refused naming the file and the line
// (exit 64, nothing made); the count loaded is logged. (An outside test saw
// "bad1,bad2" refuse neither card, "# stolen cards" refuse cards "#",
// "stolen" and "cards", and junk bytes taken as tokens, all in silence.)
func TestTerminalDenySeed(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "t1.key")
	if _, err := terminal.LoadOrCreateKey(key); err != nil {
		t.Fatal(err)
	}
	for i, c := range []struct {
		name, seed string
		says       string // the refusal; "" for a seed taken
		logs       string // with a seed taken
		denied     []string
		passed     []string
	}{
		{name: "comma-separated", seed: "bad1,bad2\n", says: "line 1: ',' at byte 4: the file holds one card token per line, not a list"},
		{name: "two on a line", seed: "ok0\nbad1 bad2\n", says: "line 2: 2 tokens on one line"},
		{name: "junk bytes", seed: "bad1\n\xff\xfe\x00bad3\n", says: "line 2: token \"\\xff\\xfe\\x00bad3\": not UTF-8"},
		{name: "invisible character", seed: "card\u200b-1\n", says: "line 1: space, control or invisible character '\\u200b' at byte 4"},
		{name: "control character", seed: "card-\x01\n", says: "line 1: space, control or invisible character '\\x01' at byte 5"},
		{name: "too long", seed: "# long\n" + strings.Repeat("t", 129) + "\n", says: "line 2: token of 129 bytes"},
		{name: "comments and blank lines", seed: "\ufeff# stolen cards\r\nbad1\r\n\n   \n  # more\nbad2\nbad1\n", logs: `msg="deny seed loaded"`,
			denied: []string{"bad1", "bad2"}, passed: []string{"#", "stolen", "cards", "more"}},
		{name: "empty", seed: "", logs: `msg="the --deny seed holds no token"`, passed: []string{"bad1"}},
		{name: "only comments", seed: "# nothing yet\n", logs: `msg="the --deny seed holds no token"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			logs := captureLogs(t)
			seed := filepath.Join(dir, fmt.Sprintf("deny-%d.txt", i))
			if err := os.WriteFile(seed, []byte(c.seed), 0o600); err != nil {
				t.Fatal(err)
			}
			data := filepath.Join(dir, fmt.Sprintf("outbox-%d", i))
			var taps strings.Builder
			for _, tok := range append(append([]string{}, c.denied...), c.passed...) {
				fmt.Fprintf(&taps, "entry card %s\n", tok)
			}
			// A gate that took taps waits to send them: it is stopped once
			// it has had time to answer them.
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			root := newRootCmd()
			var out strings.Builder
			root.SetOut(&out)
			root.SetErr(io.Discard)
			root.SetIn(strings.NewReader(taps.String()))
			root.SetArgs([]string{"terminal", "--id", "t1", "--operator", "metro", "--stop", "S1", "--key", key, "--data", data,
				"--nats", "nats://127.0.0.1:1", "--clearing-key", "0x" + strings.Repeat("00", 32), "--list-wait", "100ms", "--deny", seed})
			err := root.ExecuteContext(ctx)
			if c.says != "" {
				if want := "--deny " + seed + " " + c.says; err == nil || !strings.Contains(err.Error(), want) || exitCode(err) != exitUsage {
					t.Fatalf("%v (exit %d), want exit %d saying %q", err, exitCode(err), exitUsage, want)
				}
				if _, err := os.Stat(data); !os.IsNotExist(err) {
					t.Errorf("a refused seed left %s made", data)
				}
				return
			}
			if err != nil {
				t.Fatalf("a good seed: %v", err)
			}
			if want := fmt.Sprintf("%s file=%s", c.logs, seed); !strings.Contains(logs.String(), want) {
				t.Errorf("logs lack %q:\n%s", want, logs.String())
			}
			if len(c.denied) > 0 && !strings.Contains(logs.String(), fmt.Sprintf("tokens=%d", len(c.denied))) {
				t.Errorf("logs lack tokens=%d:\n%s", len(c.denied), logs.String())
			}
			answers := strings.Split(strings.TrimSpace(out.String()), "\n")
			if n := len(c.denied) + len(c.passed); n > 0 && len(answers) != n {
				t.Fatalf("%d taps, %d answers:\n%s", n, len(answers), out.String())
			}
			for j, a := range answers {
				if j < len(c.denied) && !strings.Contains(a, "denied deny-list") {
					t.Errorf("card %q: %q, want denied (deny-list)", c.denied[j], a)
				}
				if j >= len(c.denied) && j-len(c.denied) < len(c.passed) && !strings.Contains(a, "accepted") {
					t.Errorf("card %q: %q, want accepted", c.passed[j-len(c.denied)], a)
				}
			}
		})
	}
}

// TestInputFilesBounded: a file a flag names that is read whole must be a
// regular file within its kind's size: a device, a FIFO or a directory, or
// a file too large, is refused at once as a usage error naming the flag
// (an outside test saw `terminal --key /dev/zero` read 1.4 GB in 6 s; a
// FIFO no one writes held the command up for ever).
func TestInputFilesBounded(t *testing.T) {
	captureLogs(t)
	dir := t.TempDir()
	key := filepath.Join(dir, "t1.key")
	if _, err := terminal.LoadOrCreateKey(key); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "nowriter.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	// Sparse files: their size is what counts, nothing is read.
	sized := func(name string, n int64) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(p, n); err != nil {
			t.Fatal(err)
		}
		return p
	}
	bigKey, bigSeed, bigPEM := sized("big.key", maxKeyFileSize+1), sized("big-deny.txt", maxDenySeedSize+1), sized("big.pem", maxPEMFileSize+1)
	gate := func(flags ...string) []string {
		return append([]string{"terminal", "--id", "t1", "--operator", "metro", "--stop", "S1", "--data", filepath.Join(dir, "outbox"),
			"--nats", "nats://127.0.0.1:1", "--clearing-key", "0x" + strings.Repeat("00", 32)}, flags...)
	}
	clearingData := filepath.Join(dir, "clearing")
	for _, c := range []struct {
		name string
		args []string
		says string
	}{
		{"terminal key device", gate("--key", "/dev/zero"), "--key /dev/zero: a device, not a regular file"},
		{"terminal key fifo", gate("--key", fifo), "--key " + fifo + ": a named pipe (FIFO), not a regular file"},
		{"terminal key directory", gate("--key", dir), "--key " + dir + ": a directory, not a regular file"},
		{"terminal key too large", gate("--key", bigKey), "--key " + bigKey + ": larger than the 64 KiB this file may hold"},
		{"terminal deny device", gate("--key", key, "--deny", "/dev/zero"), "--deny /dev/zero: a device"},
		{"terminal deny fifo", gate("--key", key, "--deny", fifo), "--deny " + fifo + ": a named pipe (FIFO)"},
		{"terminal deny too large", gate("--key", key, "--deny", bigSeed), "--deny " + bigSeed + ": larger than the 64 MiB"},
		{"terminal nats-ca fifo", gate("--key", key, "--nats-ca", fifo), "--nats-ca " + fifo + ": a named pipe (FIFO)"},
		{"terminal nats-ca too large", gate("--key", key, "--nats-ca", bigPEM), "--nats-ca " + bigPEM + ": larger than the 16 MiB"},
		{"keygen key device", []string{"terminal", "keygen", "--id", "t1", "--operator", "metro", "--stop", "S1", "--key", "/dev/zero"}, "--key /dev/zero: a device"},
		{"keygen key fifo", []string{"terminal", "keygen", "--id", "t1", "--operator", "metro", "--stop", "S1", "--key", fifo}, "--key " + fifo + ": a named pipe"},
		{"nats user key fifo", []string{"nats", "user", "--id", "t1", "--key", fifo}, "--key " + fifo + ": a named pipe"},
		{"clearing registry fifo", []string{"clearing", "--data", clearingData, "--registry", fifo}, "--registry " + fifo + ": a named pipe"},
		{"clearing nats-seed fifo", []string{"clearing", "--data", clearingData, "--nats", "nats://127.0.0.1:1", "--nats-seed", fifo}, "--nats-seed " + fifo + ": a named pipe"},
		{"clearing face key fifo", []string{"clearing", "--data", clearingData, "--face-key-file", fifo}, "--face-key-file " + fifo + ": a named pipe"},
		{"token issue registry fifo", []string{"clearing", "token", "issue", "--api-tokens", filepath.Join(dir, "tokens.json"), "--role", "operator", "--operator", "metro", "--name", "n", "--registry", fifo}, "--registry " + fifo + ": a named pipe"},
		{"token list store fifo", []string{"clearing", "token", "list", "--api-tokens", fifo}, "--api-tokens " + fifo + ": a named pipe"},
		{"rider-id key fifo", []string{"clearing", "rider-id", "--rider-key", fifo, "--media", "card", "--token", "tok"}, "rider key " + fifo + ": a named pipe"},
		{"faces token file device", []string{"clearing", "faces", "list", "--api", "http://127.0.0.1:1", "--token-file", "/dev/zero"}, "--token-file /dev/zero: a device"},
		{"faces api-ca fifo", []string{"clearing", "faces", "list", "--api", "http://127.0.0.1:1", "--token-file", key, "--api-ca", fifo}, "--api-ca " + fifo + ": a named pipe"},
		{"verifier seed fifo", []string{"clearing", "verifier", "--nats", "nats://127.0.0.1:1", "--nats-seed", fifo, "--data", clearingData}, "--nats-seed " + fifo + ": a named pipe"},
		{"ledger address key fifo", []string{"ledger", "address", "--eth-key", fifo}, "--eth-key " + fifo + ": a named pipe"},
		{"ledger role key fifo", []string{"ledger", "admit", "--eth-rpc", "http://127.0.0.1:1", "--contract", "0x" + strings.Repeat("00", 20), "--eth-key", fifo, "--operator", "metro"}, "--eth-key " + fifo + ": a named pipe"},
		{"ledger deploy admin key fifo", []string{"ledger", "deploy", "--eth-rpc", "http://127.0.0.1:1", "--admin-key", fifo, "--clearing-house", "0x" + strings.Repeat("00", 20)}, "--admin-key " + fifo + ": a named pipe"},
		{"nats config clearing seed fifo", []string{"nats", "config", "--data", clearingData, "--clearing-seed", fifo}, "--clearing-seed " + fifo + ": a named pipe"},
		{"verifier-key seed fifo", []string{"clearing", "verifier-key", fifo}, "seed file " + fifo + ": a named pipe"},
		{"fares check cases fifo", []string{"fares", "check", "--feed", filepath.Join(sharedGTFS(t), "nigiri-fares"), "--cases", fifo}, "--cases " + fifo + ": a named pipe"},
	} {
		t.Run(c.name, func(t *testing.T) {
			done := make(chan error, 1)
			go func() {
				root := newRootCmd()
				root.SetOut(io.Discard)
				root.SetErr(io.Discard)
				root.SetIn(strings.NewReader(""))
				root.SetArgs(c.args)
				done <- root.Execute()
			}()
			select {
			case err := <-done:
				if err == nil || !strings.Contains(err.Error(), c.says) || exitCode(err) != exitUsage {
					t.Errorf("%v (exit %d), want exit %d saying %q", err, exitCode(err), exitUsage, c.says)
				}
			case <-time.After(10 * time.Second):
				t.Errorf("still reading after 10 s, want refused at once saying %q", c.says)
			}
		})
	}
	for _, p := range []string{filepath.Join(dir, "outbox"), clearingData} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("a refused command made %s", p)
		}
	}
}
