package terminal

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/faregate/faregate/fare"
)

// TestOutboxLossDetected: a store that lost accepted taps (here: put back
// as it was after 5 of 15, as a damaged write-ahead log or MANIFEST leaves
// it) is refused at Open, naming both sequences, rather than signing new
// taps under the lost ones' sequences; a damaged table file is an error,
// not a panic; an outbox that only moved on opens as before.
func TestOutboxLossDetected(t *testing.T) {
	dir := t.TempDir()
	tapN := func(term *Terminal, n int) {
		t.Helper()
		for range n {
			if _, err := term.Tap(context.Background(), Tap{Gate: "g1", Direction: fare.Validate, Media: fare.Card, Token: "c"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	outbox := filepath.Join(dir, "outbox")
	term := openTest(t, dir)
	tapN(term, 5)
	term.Close()
	snap := filepath.Join(t.TempDir(), "outbox")
	if err := os.CopyFS(snap, os.DirFS(outbox)); err != nil {
		t.Fatal(err)
	}
	term = openTest(t, dir) // 5 recorded: opens
	tapN(term, 10)
	term.Close()

	// The store as it was after 5, the mark as it is after 15.
	mark, err := os.ReadFile(filepath.Join(outbox, HighWaterFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(outbox); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(outbox, os.DirFS(snap)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(outbox, HighWaterFile), mark, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, dir, outbox)
	if _, err := Open(cfg); !errors.Is(err, ErrOutboxLost) || !strings.Contains(err.Error(), "ends at sequence 5, but sequence 15 was committed") || !strings.Contains(err.Error(), "--accept-lost-taps") {
		t.Fatalf("a store that lost 10 accepted taps: %v, want ErrOutboxLost naming 5 and 15 and the way on", err)
	}

	// The loss given up (--accept-lost-taps, an outside test saw the
	// advice to start on an empty --data drop every tap the store still
	// held): the gate opens with its 5 taps, said, numbers on after them,
	// and the next start needs no flag.
	lost := filepath.Join(t.TempDir(), "outbox")
	if err := os.CopyFS(lost, os.DirFS(outbox)); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	acc := testConfig(t, dir, lost)
	acc.AcceptLostTaps, acc.Logger = true, slog.New(slog.NewTextHandler(&logs, nil))
	term, err = Open(acc)
	if err != nil {
		t.Fatalf("the loss accepted: %v", err)
	}
	if term.LastSequence() != 5 || term.Pending() != 5 || !strings.Contains(logs.String(), "the loss was accepted") || !strings.Contains(logs.String(), "lost=10") {
		t.Errorf("the loss accepted: last %d, pending %d, log:\n%s", term.LastSequence(), term.Pending(), logs.String())
	}
	tapN(term, 1)
	term.Close()
	again := testConfig(t, dir, lost)
	term, err = Open(again)
	if err != nil || term.LastSequence() != 6 {
		t.Fatalf("the next start, without the flag: %v", err)
	}
	term.Close()

	// Restored whole (store and mark): opens, and goes on after 5.
	if err := os.WriteFile(filepath.Join(outbox, HighWaterFile), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	term, err = Open(cfg)
	if err != nil {
		t.Fatalf("a store with no mark: %v", err)
	}
	if term.LastSequence() != 5 {
		t.Errorf("last sequence %d, want 5", term.LastSequence())
	}
	term.Close()

	// A table file cut short: an error naming the store, not a panic.
	ssts, _ := filepath.Glob(filepath.Join(outbox, "*.sst"))
	if len(ssts) == 0 {
		t.Fatal("no table file to damage")
	}
	if err := os.Truncate(ssts[0], 1000); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(cfg); err == nil || !strings.Contains(err.Error(), outbox) {
		t.Fatalf("a table file cut short: %v, want an error naming %s", err, outbox)
	}
}

// TestDamagedOutboxKeptBeforeRepair: Badger's read-write open repairs a
// damaged store by deleting what it cannot read (here: a lost MANIFEST,
// after which it deleted every table file, and the taps in them). The
// store is copied aside first, the refusal names the copy, and the copy
// holds the tables; an outbox that needs no repair leaves no copy.
func TestDamagedOutboxKeptBeforeRepair(t *testing.T) {
	dir := t.TempDir()
	outbox := filepath.Join(dir, "outbox")
	term := openTest(t, dir)
	for range 5 {
		if _, err := term.Tap(context.Background(), Tap{Gate: "g1", Direction: fare.Validate, Media: fare.Card, Token: "c"}); err != nil {
			t.Fatal(err)
		}
	}
	term.Close()
	term = openTest(t, dir) // reopened whole: no copy
	term.Close()
	if copies, _ := filepath.Glob(outbox + ".damaged-*"); len(copies) != 0 {
		t.Fatalf("an intact outbox was copied aside: %v", copies)
	}
	tables, _ := filepath.Glob(filepath.Join(outbox, "*.sst"))
	if len(tables) == 0 {
		t.Fatal("no table file: the taps are not where the test needs them")
	}
	if err := os.Remove(filepath.Join(outbox, "MANIFEST")); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, dir, outbox)
	_, err := Open(cfg)
	copies, _ := filepath.Glob(outbox + ".damaged-*")
	if !errors.Is(err, ErrOutboxLost) || len(copies) != 1 || !strings.Contains(err.Error(), "kept in "+copies[0]) {
		t.Fatalf("an outbox without its MANIFEST: %v, copies %v; want ErrOutboxLost naming the copy kept", err, copies)
	}
	for _, tbl := range tables {
		fi, err := os.Stat(filepath.Join(copies[0], filepath.Base(tbl)))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("table %s in the copy: %v, mode %v; want it kept, owner-only", filepath.Base(tbl), err, fi.Mode())
		}
	}
}

// TestConnectionRefusalsExplained: NATS's own words for a refused gate
// (a wrong CA, a server without NKeys, a user it does not know) name no
// flag; the gate's log adds what to check.
func TestConnectionRefusalsExplained(t *testing.T) {
	term := openTest(t, t.TempDir())
	defer term.Close()
	for _, c := range []struct{ err, want string }{
		{"tls: failed to verify certificate: x509: certificate signed by unknown authority", "--nats-ca"},
		{"tls: failed to verify certificate: x509: certificate has expired or is not yet valid: current time 2026-12-04T06:00:00Z is after 2026-12-03T00:00:00Z", "out of its validity dates"},
		{"tls: failed to verify certificate: x509: cannot validate certificate for 127.0.0.1 because it doesn't contain any IP SANs", "does not name the host"},
		{"tls: failed to verify certificate: x509: certificate is valid for nats-1, not nats.example.org", "does not name the host"},
		{"nats: nkeys not supported by the server", "does not authenticate users by NKey"},
		{"nats: authorization violation", "the server refuses NATS user " + term.NATSUser()},
		{"nats: User Authentication Revoked", "and not revoked?"},
		{"dial tcp 127.0.0.1:1: connect: connection refused", ""},
	} {
		got := term.explainRefusal(c.err)
		if c.want == "" && got != c.err || c.want != "" && (!strings.HasPrefix(got, c.err) || !strings.Contains(got, c.want)) {
			t.Errorf("%q explained as %q, want it to add %q", c.err, got, c.want)
		}
	}
}

// TestCrashImageWithoutManifestKept: a crash image (the write-ahead log of
// three taps beside the tables of five earlier ones) that lost its
// MANIFEST opens (the log holds the last sequence) but holds three of the
// eight unconfirmed taps: the copy taken before the repair stays, and the
// log says so (an outside review found it deleted, "no accepted tap was
// lost"). A crash image that lost nothing leaves no copy.
func TestCrashImageWithoutManifestKept(t *testing.T) {
	dir := t.TempDir()
	tap := func(term *Terminal, n int) {
		for range n {
			if _, err := term.Tap(context.Background(), Tap{Gate: "g1", Direction: fare.Validate, Media: fare.Card, Token: "c"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	term := openTest(t, dir)
	tap(term, 5)
	term.Close()
	term = openTest(t, dir)
	tap(term, 3)
	// The files as a crash leaves them: copied while the store is open.
	crashed := filepath.Join(t.TempDir(), "outbox")
	if err := os.CopyFS(crashed, os.DirFS(filepath.Join(dir, "outbox"))); err != nil {
		t.Fatal(err)
	}
	term.Close()
	open := func(outbox string) (*Terminal, *bytes.Buffer, error) {
		var logs bytes.Buffer
		cfg := testConfig(t, dir, outbox)
		cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		term, err := Open(cfg)
		return term, &logs, err
	}
	whole := filepath.Join(t.TempDir(), "outbox")
	if err := os.CopyFS(whole, os.DirFS(crashed)); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(crashed, "MANIFEST")); err != nil {
		t.Fatal(err)
	}

	term, logs, err := open(crashed)
	copies, _ := filepath.Glob(crashed + ".damaged-*")
	if err == nil {
		term.Close()
	}
	if len(copies) != 1 || (err == nil && !strings.Contains(logs.String(), "cannot be shown that no accepted tap was lost")) || (err != nil && !strings.Contains(err.Error(), copies[0])) {
		t.Fatalf("a crash image without its MANIFEST: %v, copies %v, log:\n%s\nwant the copy kept and said", err, copies, logs)
	}

	// Started again (a restart loop): the copy is neither made again nor
	// removed.
	if again, _, err := open(crashed); err == nil {
		again.Close()
	}
	if again, _ := filepath.Glob(crashed + ".damaged-*"); len(again) != 1 || again[0] != copies[0] {
		t.Fatalf("started again: copies %v, want only %s", again, copies[0])
	}

	term, _, err = open(whole) // a crash image that lost nothing
	if err != nil {
		t.Fatal(err)
	}
	defer term.Close()
	if copies, _ := filepath.Glob(whole + ".damaged-*"); len(copies) != 0 || term.LastSequence() != 8 || term.Pending() != 8 {
		t.Fatalf("a whole crash image: copies %v, last %d, pending %d; want none, 8, 8", copies, term.LastSequence(), term.Pending())
	}
}

// testConfig is openTest's terminal (its key in dir) with its outbox in
// outbox.
func testConfig(t *testing.T, dir, outbox string) Config {
	t.Helper()
	key, err := LoadOrCreateKey(filepath.Join(dir, "key"))
	if err != nil {
		t.Fatal(err)
	}
	return Config{ID: "t1", Operator: "metro", Stop: "S1", Key: key, DataDir: outbox, NATSURL: "nats://127.0.0.1:1",
		ClearingKeys: []ed25519.PublicKey{testClearingKey.Public().(ed25519.PublicKey)}}
}

// TestKeepAsidePerIncident: a damaged outbox is copied aside once per
// state: a restart over the same files names the earlier copy; a store
// that changed since (a later incident) is copied again; past
// maxKeptCopies the store is left as it is and the gate refused, naming
// the copies (an outside review found a second incident repaired with no
// copy because an older one was there).
func TestKeepAsidePerIncident(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "outbox")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	write := func(content string) {
		if err := os.WriteFile(filepath.Join(dir, "00001.mem"), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	why := errors.New("a write-ahead log left")
	// Copies a crash cut short (never renamed whole) are removed, not
	// counted: the store they copied was left as it was. A directory only
	// named like one (a user's) is neither removed nor counted.
	for _, stamp := range []string{"20260101T000000.000000001Z", "20260101T000000.000000002Z", "20260101T000000.000000003Z"} {
		if err := os.MkdirAll(filepath.Join(dir+".copying-"+stamp, "x"), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	mine := []string{dir + ".copying-my-notes", dir + ".damaged-by-hand", filepath.Join(filepath.Dir(dir), "other.copying-20260101T000000.000000004Z")}
	for _, m := range mine {
		if err := os.MkdirAll(m, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	write("first incident")
	first, reused, err := keepAside(dir, nil, why)
	if err != nil || reused || first == "" {
		t.Fatalf("first incident: %q, reused %v, %v; want a new copy", first, reused, err)
	}
	again, reused, err := keepAside(dir, nil, why)
	if err != nil || !reused || again != first {
		t.Fatalf("the same store again: %q, reused %v, %v; want %s named", again, reused, err, first)
	}
	var copies []string
	for i, content := range []string{"second incident, longer", "third incident, longer still"} {
		write(content)
		kept, reused, err := keepAside(dir, nil, why)
		if err != nil || reused || kept == first || slices.Contains(copies, kept) {
			t.Fatalf("incident %d: %q, reused %v, %v; want a copy of its own", i+2, kept, reused, err)
		}
		got, _ := os.ReadFile(filepath.Join(kept, "00001.mem"))
		if string(got) != content {
			t.Fatalf("incident %d's copy holds %q", i+2, got)
		}
		copies = append(copies, kept)
	}
	write("a fourth, before anyone looked")
	kept, _, err := keepAside(dir, nil, why)
	if err == nil || kept != "" || !strings.Contains(err.Error(), "3 copies") || !strings.Contains(err.Error(), first) {
		t.Fatalf("a fourth incident: %q, %v; want refused naming the 3 copies", kept, err)
	}
	if all := keptCopies(dir, damagedInfix); len(all) != maxKeptCopies {
		t.Fatalf("copies %v, want %d", all, maxKeptCopies)
	}
	if left := keptCopies(dir, copyingInfix); len(left) != 0 {
		t.Fatalf("unfinished copies left: %v", left)
	}
	for _, m := range mine {
		if _, err := os.Stat(m); err != nil {
			t.Errorf("%s, not the gate's: %v", m, err)
		}
	}
}

// TestOutboxStorageFaults: what an outside test did to a gate's disk.
// A table file the MANIFEST does not name (a flush a crash cut short) is no
// damage: the gate opens with every tap. A flipped byte inside a table is
// an error naming the file at Open, not a panic in Badger's compaction at
// every start. An empty high-water mark beside a store holding taps is
// said, as a damaged one is.
func TestOutboxStorageFaults(t *testing.T) {
	seed := func(t *testing.T) (dir, outbox string) {
		dir = t.TempDir()
		outbox = filepath.Join(dir, "outbox")
		term := openTest(t, dir)
		for range 5 {
			if _, err := term.Tap(context.Background(), Tap{Gate: "g1", Direction: fare.Validate, Media: fare.Card, Token: "c"}); err != nil {
				t.Fatal(err)
			}
		}
		term.Close()
		return dir, outbox
	}
	referenced := func(t *testing.T, outbox string) string {
		t.Helper()
		ssts, _ := filepath.Glob(filepath.Join(outbox, "*.sst"))
		if len(ssts) == 0 {
			t.Fatal("no table file: the taps are not where the test needs them")
		}
		return ssts[0]
	}
	for _, tc := range []struct {
		name    string
		damage  func(t *testing.T, outbox string)
		wantErr string // "" opens with the 5 taps pending
		wantLog string
	}{
		{"an empty table file no MANIFEST names", func(t *testing.T, outbox string) {
			os.WriteFile(filepath.Join(outbox, "000099.sst"), nil, 0o600)
		}, "", ""},
		{"a zeroed table file no MANIFEST names", func(t *testing.T, outbox string) {
			os.WriteFile(filepath.Join(outbox, "000098.sst"), make([]byte, 4096), 0o600)
		}, "", ""},
		{"a flipped byte inside a table", func(t *testing.T, outbox string) {
			name := referenced(t, outbox)
			b, err := os.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			b[len(b)/3] ^= 0x40
			if err := os.WriteFile(name, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}, "is damaged", ""},
		{"a table the MANIFEST names, missing", func(t *testing.T, outbox string) {
			os.Remove(referenced(t, outbox))
		}, "which the store's MANIFEST names, is missing", ""},
		{"an empty high-water mark", func(t *testing.T, outbox string) {
			os.WriteFile(filepath.Join(outbox, HighWaterFile), nil, 0o600)
		}, "", "high-water mark is damaged, empty or missing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, outbox := seed(t)
			tc.damage(t, outbox)
			var logs bytes.Buffer
			cfg := testConfig(t, dir, outbox)
			cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			term, err := Open(cfg)
			if tc.wantErr != "" {
				if err == nil {
					term.Close()
				}
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), outbox) {
					t.Fatalf("Open: %v, want an error containing %q naming the file", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer term.Close()
			if term.LastSequence() != 5 || term.Pending() != 5 {
				t.Errorf("last %d, pending %d; want 5 and 5", term.LastSequence(), term.Pending())
			}
			if tc.wantLog != "" && !strings.Contains(logs.String(), tc.wantLog) {
				t.Errorf("log, want %q:\n%s", tc.wantLog, logs.String())
			}
		})
	}
}

// TestEmptyLogFilesOpen: a value log or write-ahead log file Badger made
// and never wrote (zero bytes: a power cut right after it created it)
// holds nothing; the gate opens, nothing lost, no copy left. (An outside
// test: the first start failed with Badger's "Create a new file", the
// copy kept never checked out, and after three the gate would not start.)
func TestEmptyLogFilesOpen(t *testing.T) {
	for _, ext := range []string{".vlog", ".mem"} {
		t.Run(ext, func(t *testing.T) {
			dir := t.TempDir()
			outbox := filepath.Join(dir, "outbox")
			term := openTest(t, dir)
			tapN(t, term, 5)
			term.Close()
			files, _ := filepath.Glob(filepath.Join(outbox, "*"+ext))
			name := filepath.Join(outbox, "000009"+ext)
			if ext == ".mem" {
				name = filepath.Join(outbox, "00009"+ext)
			}
			if len(files) > 0 {
				slices.Sort(files)
				name = files[len(files)-1]
			}
			if err := os.WriteFile(name, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			for i := range 2 {
				term, err := Open(testConfig(t, dir, outbox))
				if err != nil {
					t.Fatalf("start %d with %s empty: %v", i+1, filepath.Base(name), err)
				}
				if term.LastSequence() != 5 || term.Pending() != 5 {
					t.Errorf("start %d: last %d, pending %d; want 5 and 5", i+1, term.LastSequence(), term.Pending())
				}
				term.Close()
			}
			if copies, _ := filepath.Glob(outbox + ".damaged-*"); len(copies) != 0 {
				t.Errorf("copies left: %v", copies)
			}
		})
	}
}

// TestDeadLettersOfAStoreACrashLeft: `terminal rejected` on a stopped
// store a crash left, or one holding a log file made and never written,
// says the gate's next start repairs it, not to stop a terminal that is
// stopped (an outside test); a whole store reads.
func TestDeadLettersOfAStoreACrashLeft(t *testing.T) {
	dir := t.TempDir()
	outbox := filepath.Join(dir, "outbox")
	term := openTest(t, dir)
	tapN(t, term, 2)
	term.Close()
	if dl, err := ReadDeadLetters(outbox); err != nil || len(dl) != 0 {
		t.Fatalf("a whole store: %v, %v", dl, err)
	}
	if err := os.WriteFile(filepath.Join(outbox, "000009.vlog"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadDeadLetters(outbox); !errors.Is(err, ErrStoreUnclean) || !strings.Contains(err.Error(), "start the terminal once") || strings.Contains(err.Error(), "stop the terminal first") {
		t.Errorf("a store with an empty log file: %v", err)
	}
}
