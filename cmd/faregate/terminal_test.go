package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/fare"
	"github.com/faregate/faregate/terminal"
)

func TestParseTapLine(t *testing.T) {
	cats := documentedRiderCategories
	tap, err := parseTapLine("entry card tok123 adult", tapLineRules{cats: cats, camera: true})
	if err != nil || tap.Direction != fare.Entry || tap.Media != fare.Card || tap.Token != "tok123" || tap.RiderCategory != "adult" {
		t.Fatalf("got %+v, %v", tap, err)
	}
	frame := filepath.Join(t.TempDir(), "f.jpg")
	if err := os.WriteFile(frame, []byte("\xff\xd8 a frame"), 0o600); err != nil {
		t.Fatal(err)
	}
	tap, err = parseTapLine("entry card tok9 frames="+frame+","+frame, tapLineRules{cats: cats, camera: true})
	if err != nil || tap.Token != "tok9" || len(tap.Frames) != 2 || string(tap.Frames[1]) != "\xff\xd8 a frame" {
		t.Fatalf("with frames: %+v, %v", tap, err)
	}
	// A face is the camera's: a subject id on a line is refused.
	for _, bad := range []string{"", "entry card", "sideways card tok", "entry coin tok", "entry card a b c", "entry face subject-42",
		"entry card tok frames=/no/such/frame.jpg"} {
		if _, err := parseTapLine(bad, tapLineRules{cats: cats, camera: true}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	// A token the event could not carry is refused naming why, not by the
	// signer's internal wording.
	for line, want := range map[string]string{
		"entry card tok\xff":                     "not UTF-8",
		"entry card " + strings.Repeat("t", 129): "token of 129 bytes",
	} {
		if _, err := parseTapLine(line, tapLineRules{cats: cats}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%.20q: %v, want refused saying %q", line, err, want)
		}
	}
	// Frames at a gate without a camera, or a path that is no picture file
	// (a FIFO no one writes would block the gate), are refused at once.
	if _, err := parseTapLine("entry card tok frames="+frame, tapLineRules{cats: cats}); err == nil || !strings.Contains(err.Error(), "no camera") {
		t.Errorf("frames at a gate without a camera: %v", err)
	}
	fifo := filepath.Join(t.TempDir(), "nowriter.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{fifo, "/dev/null", t.TempDir()} {
		done := make(chan error, 1)
		go func() {
			_, err := parseTapLine("entry card tok frames="+p, tapLineRules{cats: cats, camera: true})
			done <- err
		}()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), "not a regular file") {
				t.Errorf("frames=%s: %v, want refused as not a regular file", p, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("frames=%s: the line blocked", p)
		}
	}
	// A claimed category must be a rider category (never priced: the gate
	// uses the card's enrolment); anything else refuses the line, saying why.
	if _, err := parseTapLine("entry card tok superhero", tapLineRules{cats: cats, camera: true}); err == nil ||
		err.Error() != `rider category "superhero": not one of adult, concession (--rider-categories); the gate prices by the card's enrolment, never by a claim` {
		t.Errorf("superhero: %v", err)
	}
	if tap, err := parseTapLine("validate card tok seventy_plus", tapLineRules{cats: []string{"adult", "seventy_plus"}}); err != nil || tap.RiderCategory != "seventy_plus" {
		t.Errorf("a category of --rider-categories: %+v, %v", tap, err)
	}
	if tap, err := parseTapLine("exit card tok", tapLineRules{cats: cats, camera: true}); err != nil || tap.RiderCategory != "" {
		t.Errorf("no claim: %+v, %v", tap, err)
	}
}

// TestTerminalFlags: every flag a typo can break (ids, rates, files,
// addresses, camera settings without a camera, NATS URLs and CA) is checked
// before the terminal makes or opens anything (exit status 64).
func TestTerminalFlags(t *testing.T) {
	data := filepath.Join(t.TempDir(), "terminal")
	key := filepath.Join(t.TempDir(), "t.key")
	if _, err := terminal.LoadOrCreateKey(key); err != nil { // as keygen makes it
		t.Fatal(err)
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	// Usage errors exit 64; a file not there or a port held are no usage
	// errors (a restart may find them right: exit 1). Either way they are
	// found before anything is made.
	for _, c := range []struct {
		args []string
		says string
		code int
	}{
		{[]string{"--rider-categories", ""}, "--rider-categories", exitUsage},
		{[]string{"--rider-categories", "adult,"}, "--rider-categories", exitUsage},
		{[]string{"--rider-categories", "adult,super hero"}, "--rider-categories", exitUsage},
		{[]string{"--id", "bad.id"}, `--id "bad.id"`, exitUsage},
		{[]string{"--operator", "TL.x"}, `--operator "TL.x"`, exitUsage},
		{[]string{"--stop", "S 1"}, `--stop "S 1"`, exitUsage},
		{[]string{"--source", "generate", "--rate", "NaN"}, "--rate NaN", exitUsage},
		{[]string{"--source", "generate", "--rate", "Inf"}, "--rate +Inf", exitUsage},
		{[]string{"--source", "generate", "--rate", "1e-12"}, "--rate 1e-12", exitUsage},
		{[]string{"--source", "generate", "--rate", "1e10"}, "--rate 1e+10", exitUsage},
		// Ignored by any other source, so refused (an outside review).
		{[]string{"--source", "stdin", "--rate", "5"}, "--rate goes with --source generate (this gate's taps come from --source stdin)", exitUsage},
		{[]string{"--count", "3"}, "--count goes with --source generate", exitUsage},
		{[]string{"--face-policy", "policy.json"}, "--face-policy is a camera setting", exitUsage},
		{[]string{"--nats", "http://[::1"}, "--nats", exitUsage},
		{[]string{"--nats", "http://127.0.0.1:4222"}, "want nats://", exitUsage},
		{[]string{"--nats-ca", "/dev/null"}, "--nats-ca /dev/null: a device, not a regular file", exitUsage},
		// A plain file as the outbox's directory: named, not taken for a
		// damaged store to restore from a backup (an outside test).
		{[]string{"--data", key}, "--data " + key + ": a file, not a directory", exitUsage},
		{[]string{"--data", filepath.Join(key, "outbox")}, "not a directory (a file is on the way there)", exitUsage},
		{[]string{"--nats-ca", key}, "no PEM certificate", exitUsage},
		{[]string{"--min-free-mib", "8796093022208"}, "--min-free-mib", exitUsage},
		{[]string{"--min-free-mib", "1"}, "--min-free-mib 1: want at least 32", exitUsage},
		{[]string{"--list-wait", "-1s"}, "--list-wait", exitUsage},
		// An erased subject must stop matching within 15 minutes.
		{[]string{"--camera", t.TempDir(), "--face-gallery-max-age", "100000h"}, "--face-gallery-max-age 100000h0m0s: want at least 1m0s", exitUsage},
		{[]string{"--camera", t.TempDir(), "--face-gallery-max-age", "10s"}, "--face-gallery-max-age 10s: want at least 1m0s (two of clearing's face gallery heads, issued every 30s", exitUsage},
		{[]string{"--camera", t.TempDir(), "--face-gallery-max-age", "0s"}, "--face-gallery-max-age 0s", exitUsage},
		{[]string{"--metrics", "bogus"}, "--metrics \"bogus\"", exitUsage},
		{[]string{"--metrics", "127.0.0.1:http"}, "is not a number", exitUsage},
		{[]string{"--deny", filepath.Join(t.TempDir(), "missing")}, "--deny", exitFailure},
		{[]string{"--metrics", busy.Addr().String()}, "--metrics", exitFailure},
	} {
		root := newRootCmd()
		root.SetOut(io.Discard)
		root.SetErr(io.Discard)
		root.SetArgs(append([]string{"terminal", "--id", "t1", "--operator", "metro", "--stop", "S1", "--key", key, "--data", data,
			"--clearing-key", "0x" + strings.Repeat("00", 32)}, c.args...))
		err := root.Execute()
		if err == nil || !strings.Contains(err.Error(), c.says) || exitCode(err) != c.code {
			t.Errorf("%v: %v (exit %d), want exit %d saying %q", c.args, err, exitCode(err), c.code, c.says)
		}
	}
	// A camera setting that comes from the environment (an image's
	// FAREGATE_MODELS) is no mistake at a gate without a camera.
	root := newRootCmd()
	root.SetOut(io.Discard)
	root.SetErr(io.Discard)
	root.SetArgs([]string{"terminal", "--id", "t1", "--operator", "metro", "--stop", "S1", "--key", key, "--data", data,
		"--clearing-key", "0x" + strings.Repeat("00", 32), "--deny", filepath.Join(t.TempDir(), "missing")})
	t.Setenv("FAREGATE_MODELS", "/usr/share/faregate/models")
	if err := root.Execute(); err == nil || strings.Contains(err.Error(), "camera setting") || !strings.Contains(err.Error(), "--deny") {
		t.Errorf("FAREGATE_MODELS at a card gate: %v, want it passed over (and the missing --deny named)", err)
	}
	if _, err := os.Stat(data); !os.IsNotExist(err) {
		t.Errorf("a refused terminal created %s", data)
	}

	// A key file that does not exist (a typo): refused, naming keygen, and
	// no key made: a key of the gate's own would be registered nowhere.
	key = filepath.Join(t.TempDir(), "typo.key")
	root = newRootCmd()
	root.SetOut(io.Discard)
	root.SetErr(io.Discard)
	root.SetArgs([]string{"terminal", "--id", "t1", "--operator", "metro", "--stop", "S1", "--key", key, "--data", data,
		"--clearing-key", "0x" + strings.Repeat("00", 32)})
	if err := root.Execute(); err == nil || !strings.Contains(err.Error(), "faregate terminal keygen --key "+key+" --id t1") {
		t.Errorf("a missing key file: %v, want refused naming keygen", err)
	}
	for _, p := range []string{data, key} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("a terminal without a key file created %s", p)
		}
	}

	// A key file that does not exist beside an existing outbox (a typo, a
	// lost key): refused, no key made.
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "MANIFEST"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	root = newRootCmd()
	root.SetOut(io.Discard)
	root.SetErr(io.Discard)
	root.SetArgs([]string{"terminal", "--id", "t1", "--operator", "metro", "--stop", "S1", "--key", key, "--data", data,
		"--clearing-key", "0x" + strings.Repeat("00", 32)})
	if err := root.Execute(); err == nil || !strings.Contains(err.Error(), "holds this terminal's outbox") {
		t.Errorf("a missing key beside an outbox: %v", err)
	}
	if _, err := os.Stat(key); !os.IsNotExist(err) {
		t.Errorf("a key was made beside an existing outbox")
	}
}

// TestTerminalKeygen: the registry entry holds the key in 0x hex, as every
// key elsewhere (also printed on stderr); ids the registry refuses are
// refused here.
func TestTerminalKeygen(t *testing.T) {
	root := newRootCmd()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs([]string{"terminal", "keygen", "--key", filepath.Join(t.TempDir(), "t1.key"), "--id", "t1", "--operator", "metro", "--stop", "S1"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	var entry clearing.TerminalPublicKey
	if err := json.Unmarshal(out.Bytes(), &entry); err != nil || len(entry.PublicKey) != 32 || entry.ID != "t1" {
		t.Fatalf("registry entry %s: %v", out.String(), err)
	}
	if want := `"public_key": "0x` + hex.EncodeToString(entry.PublicKey) + `"`; !strings.Contains(out.String(), want) {
		t.Errorf("registry entry %s, want the key as %s", out.String(), want)
	}
	// The key's proof of the entry: what lets metro, and no one else,
	// register it.
	if err := fare.VerifyKeyProof(entry.PublicKey, "metro", "t1", "S1", entry.KeyProof); err != nil {
		t.Errorf("registry entry %s: key proof: %v", out.String(), err)
	}
	if err := fare.VerifyKeyProof(entry.PublicKey, "bus", "t1", "S1", entry.KeyProof); err == nil {
		t.Error("the entry's key proof verifies for another operator")
	}
	if want := "public key: 0x" + hex.EncodeToString(entry.PublicKey); !strings.Contains(errOut.String(), want) {
		t.Errorf("stderr %q, want %q", errOut.String(), want)
	}
	// An entry the registry would refuse is not printed, nor a key made.
	keyFile := filepath.Join(t.TempDir(), "bad.key")
	for _, args := range [][]string{{"--id", "t 1", "--operator", "metro", "--stop", "S1"}, {"--id", "t1", "--operator", "metro", "--stop", "S 1"}, {"--id", "*", "--operator", "metro", "--stop", "S1"}} {
		root := newRootCmd()
		root.SetOut(io.Discard)
		root.SetErr(io.Discard)
		root.SetArgs(append([]string{"terminal", "keygen", "--key", keyFile}, args...))
		if err := root.Execute(); err == nil || exitCode(err) != exitUsage {
			t.Errorf("keygen %v: %v, want a usage error", args, err)
		}
	}
	if _, err := os.Stat(keyFile); !os.IsNotExist(err) {
		t.Errorf("a refused keygen made %s", keyFile)
	}
}

// TestReadTapLine: an over-long tap line is measured and skipped whole,
// and the lines after it are read as usual (it used to stop the terminal:
// "bufio.Scanner: token too long", the lines after it never read).
func TestReadTapLine(t *testing.T) {
	long := strings.Repeat("x", 1<<20)
	edge := strings.Repeat("y", maxTapLine)
	in := "entry card a\n" + long + "\n\nexit card b\r\n" + edge + "\n" + edge + "z\n" + "validate card c"
	br := bufio.NewReaderSize(strings.NewReader(in), maxTapLine+1)
	type got struct {
		line string
		long int
	}
	want := []got{{"entry card a", 0}, {"", 1 << 20}, {"", 0}, {"exit card b\r", 0}, {edge, 0}, {"", maxTapLine + 1}, {"validate card c", 0}}
	for i, w := range want {
		line, n, err := readTapLine(br)
		if err != nil || string(line) != w.line || n != w.long {
			t.Fatalf("line %d: %.20q (long %d), %v; want %.20q (long %d)", i+1, line, n, err, w.line, w.long)
		}
	}
	if _, _, err := readTapLine(br); !errors.Is(err, io.EOF) {
		t.Fatalf("after the last line: %v, want EOF", err)
	}
}

// TestTapLinesInvisibleCharacters: a tap line with a control character or
// an invisible one (a zero-width space would make another card of the
// same printed token) is refused with where it is, and nothing is tapped.
func TestTapLinesInvisibleCharacters(t *testing.T) {
	in := "entry card card\u200b-1 adult\nentry card card-\x01 adult\nentry card \u2060card adult\n"
	var out strings.Builder
	// No terminal: a line that passed would panic on the nil terminal.
	if err := tapsFromLines(context.Background(), nil, tapLineRules{cats: documentedRiderCategories}, strings.NewReader(in), &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`line 1: control or invisible character '\u200b' at byte 15`,
		`line 2: control or invisible character '\x01' at byte 16`,
		`line 3: control or invisible character '\u2060' at byte 11`,
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output %q lacks %q", out.String(), want)
		}
	}
}

// TestNewGateWithoutListsSaysSo: a gate started for the first time that
// cannot reach clearing within --list-wait holds no copy of the gate lists:
// it says every card passes, not that it decides from a stored copy.
func TestNewGateWithoutListsSaysSo(t *testing.T) {
	logs := captureLogs(t)
	dir := t.TempDir()
	key := filepath.Join(dir, "t1.key")
	if _, err := runCLI(t, "terminal", "keygen", "--key", key, "--id", "t1", "--operator", "metro", "--stop", "S1"); err != nil {
		t.Fatal(err)
	}
	root := newRootCmd()
	root.SetOut(io.Discard)
	root.SetErr(io.Discard)
	root.SetIn(strings.NewReader("")) // no taps: it stops once stdin ends
	root.SetArgs([]string{"terminal", "--id", "t1", "--operator", "metro", "--stop", "S1", "--key", key, "--data", filepath.Join(dir, "outbox"),
		"--nats", "nats://127.0.0.1:1", "--clearing-key", "0x" + strings.Repeat("00", 32), "--list-wait", "300ms", "--source", "stdin"})
	_ = root.Execute()
	if !strings.Contains(logs.String(), "this gate's copy of them is empty (never synced, or both lists were empty when it last did): every card not in the --deny seed passes") {
		t.Fatalf("a new gate without lists logged:\n%s", logs.String())
	}
}

// TestNATSSafeWithoutCA: a gate warns it talks to NATS in the clear unless
// every URL names a loopback host or asks for TLS (an outside red team: events carry raw
// card tokens).
func TestNATSSafeWithoutCA(t *testing.T) {
	for urls, want := range map[string]bool{
		"nats://127.0.0.1:4222":                      true,
		"nats://localhost:4222":                      true,
		"nats://[::1]:4222":                          true,
		"nats://127.0.0.1:4222,nats://10.0.0.5:4222": false,
		"nats://clearing.example:4222":               false,
		"nats://10.0.0.5:4222":                       false,
		"127.0.0.1:4222":                             true, // no scheme: nats://
		"localhost:4222":                             true,
		"10.0.0.5:4222":                              false,
		"tls://clearing.example:4222":                true, // TLS asked for
	} {
		if got := natsSafeWithoutCA(urls); got != want {
			t.Errorf("natsSafeWithoutCA(%q) = %v, want %v", urls, got, want)
		}
	}
}
