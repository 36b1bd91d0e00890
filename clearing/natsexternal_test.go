package clearing_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/fare"
	"github.com/faregate/faregate/ledger"
	"github.com/faregate/faregate/terminal"
)

// TestExternalNATSServer runs clearing and a terminal against a real
// nats-server process configured with clearing.NATSServerConfig: the
// terminal's events are applied and the deny list reaches it through the
// server's bucket; a terminal cannot touch another terminal's subjects nor
// JetStream's API beyond watching the gate lists; anonymous clients are refused; after a
// revocation on chain the regenerated configuration, reloaded with SIGHUP,
// disconnects and refuses the revoked terminal while the others go on.
func TestExternalNATSServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	reg, keys := testRegistry(2) // t1 metro, t2 bus
	led := openLedger(t, filepath.Join(dir, "chain"))
	defer led.Close()
	publish(t, clearing.Config{Registry: reg, Ledger: led})

	// The configuration comes from the chain's registry, as `faregate nats
	// config` makes it.
	chainTerminals := func() []clearing.RegisteredTerminal {
		t.Helper()
		ct := clearing.NewChainTerminals(led)
		if err := ct.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		return ct.All()
	}
	port := freePort(t)
	confPath := filepath.Join(dir, "nats.conf")
	clearingUser := testClearingUser()
	writeConf := func(terms []clearing.RegisteredTerminal) string {
		t.Helper()
		conf := fmt.Sprintf("listen: \"127.0.0.1:%d\"\njetstream {\n  store_dir: %q\n}\n", port, filepath.Join(dir, "jetstream")) +
			clearing.NATSServerConfig(terms, clearingUser, clearing.Verifiers{})
		tmp := confPath + ".tmp"
		if err := os.WriteFile(tmp, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, confPath); err != nil {
			t.Fatal(err)
		}
		return conf
	}
	conf := writeConf(chainTerminals())
	for _, id := range []string{"t1", "t2"} {
		if u, _ := fare.NATSUserKey(keys[id].Public().(ed25519.PublicKey), id); !strings.Contains(conf, u) {
			t.Fatalf("configuration lacks %s's NKey %s:\n%s", id, u, conf)
		}
	}
	srv := startNATSServer(t, confPath)
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)

	cl := startClearing(t, clearing.Config{DataDir: filepath.Join(dir, "clearing"), NATSURL: url, NATSSeedFile: clearingSeedFile(t),
		Registry: reg, Ledger: led, Period: time.Hour, RegistryPoll: 200 * time.Millisecond})
	defer cl.stop(t)
	term := startTerminal(t, dir, url, reg, keys, "t1")
	defer term.stop(t)
	const n = 5
	for i := range n {
		tap(t, term.Terminal, fmt.Sprintf("card-%d", i), fare.Entry)
	}
	waitFor(t, "t1's outbox drained through the external server", 20*time.Second, func() bool { return term.Pending() == 0 })
	if s := cl.Stats(); s.Applied != n || s.Quarantined != 0 {
		t.Fatalf("applied %d, quarantined %d; want %d, 0", s.Applied, s.Quarantined, n)
	}
	// The gate lists reach t1 through the external server's buckets, with
	// the permissions the configuration gives a terminal.
	if err := cl.Deny(ctx, fare.Card, "card-stolen", "reported stolen"); err != nil {
		t.Fatal(err)
	}
	waitDenyVersion(t, term, 1, 10*time.Second)
	checkDecision(t, term, fare.Card, "card-stolen", "denied/deny-list")

	// No anonymous access.
	if nc, err := nats.Connect(url, nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Fatal("an anonymous client connected")
	} else if !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("anonymous client: %v, want %v", err, nats.ErrAuthorization)
	}

	// t2 (a bus terminal) against t1's subjects and JetStream's API.
	asyncErrs := make(chan error, 64)
	t2 := terminalConn(t, url, keys["t2"], "t2", nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { asyncErrs <- err }))
	defer t2.Close()
	checkPermissions(t, t2, asyncErrs, []permCase{
		{name: "own confirmations", sub: fare.AppliedSubject("t2")},
		{name: "own inbox", sub: fare.TerminalInboxPrefix("t2") + ".x"},
		{name: "own confirmation request", pub: fare.WatermarkSubject("t2")},
		{name: "another terminal's event subject", pub: fare.EventSubject("metro", "t1"), denied: true},
		{name: "its own name under another operator", pub: fare.EventSubject("metro", "t2"), denied: true},
		{name: "another terminal's confirmation request", pub: fare.WatermarkSubject("t1"), denied: true},
		{name: "another terminal's confirmations", sub: fare.AppliedSubject("t1"), denied: true},
		{name: "every confirmation", sub: fare.AppliedSubject("*"), denied: true},
		{name: "every event", sub: fare.EventSubjects, denied: true},
		{name: "another terminal's inbox", sub: fare.TerminalInboxPrefix("t1") + ".>", denied: true},
		{name: "the quarantine", sub: fare.QuarantineSubject, denied: true},
		{name: "JetStream's API", pub: "$JS.API.STREAM.LIST", denied: true},
		{name: "JetStream's API, subscribing", sub: "$JS.API.>", denied: true},
		{name: "own feed request", pub: fare.GateFeedSubject("t2", fare.FeedDeny)},
		{name: "another terminal's feed request", pub: fare.GateFeedSubject("t1", fare.FeedDeny), denied: true},
		{name: "own feed's flow control", pub: "$JS.FC.KV_" + fare.DenyBucket + "." + fare.GateFeedConsumer("t2", fare.FeedDeny) + ".y"},
		{name: "another consumer's flow control", pub: "$JS.FC.KV_" + fare.DenyBucket + ".x.y", denied: true},
		{name: "the deny bucket's stream info", pub: "$JS.API.STREAM.INFO.KV_" + fare.DenyBucket, denied: true},
		{name: "a consumer on the deny bucket", pub: "$JS.API.CONSUMER.CREATE.KV_" + fare.DenyBucket + ".x.$KV." + fare.DenyBucket + ".>", denied: true},
		{name: "a put into the deny bucket", pub: "$KV." + fare.DenyBucket + ".x", denied: true},
		{name: "a purge of the enrolments bucket", pub: "$JS.API.STREAM.PURGE.KV_" + fare.EnrolBucket, denied: true},
	})
	js, err := jetstream.NewWithAPIPrefix(t2, lentAPI)
	if err != nil {
		t.Fatal(err)
	}
	sctx, scancel := context.WithTimeout(ctx, 3*time.Second)
	if _, err := js.Stream(sctx, fare.EventStream); err == nil {
		t.Error("terminal t2 read the event stream's info through JetStream's API")
	} else {
		t.Logf("t2 asking JetStream for %s: %v", fare.EventStream, err)
	}
	scancel()
	if _, err := t2.Request("$JS.API.STREAM.LIST", nil, 2*time.Second); err == nil {
		t.Error("terminal t2 listed the streams")
	}

	// Bus revokes t2 on chain; the configuration is regenerated without it
	// and the server reloads it on SIGHUP.
	bus, err := led.OperatorAccount(ctx, "bus")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bus.RevokeTerminal(ctx, "t2"); err != nil {
		t.Fatal(err)
	}
	terms := chainTerminals()
	conf = writeConf(terms)
	t2User, _ := fare.NATSUserKey(keys["t2"].Public().(ed25519.PublicKey), "t2")
	t1User, _ := fare.NATSUserKey(keys["t1"].Public().(ed25519.PublicKey), "t1")
	if strings.Contains(conf, t2User) || !strings.Contains(conf, t1User) {
		t.Fatalf("regenerated configuration after revoking t2:\n%s", conf)
	}
	srv.reload(t)
	waitFor(t, "revoked t2 disconnected", 10*time.Second, func() bool { return !t2.IsConnected() })
	if nc, err := nats.Connect(url, append(terminalOptions(t, keys["t2"], "t2"), nats.MaxReconnects(0))...); err == nil {
		nc.Close()
		t.Fatal("revoked terminal t2 connected")
	} else if !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("revoked t2 connecting: %v, want %v", err, nats.ErrAuthorization)
	}
	// t1 and clearing carry on through the reload.
	for i := range n {
		tap(t, term.Terminal, fmt.Sprintf("card-after-%d", i), fare.Entry)
	}
	waitFor(t, "t1's outbox drained after the reload", 20*time.Second, func() bool { return term.Pending() == 0 })
	if s := cl.Stats(); s.Applied != 2*n || s.Quarantined != 0 {
		t.Fatalf("after the reload: applied %d, quarantined %d; want %d, 0", s.Applied, s.Quarantined, 2*n)
	}

	// A mistaken reload admits another clearing user (a mistyped
	// --clearing-seed) for a few seconds: the server refuses clearing's
	// reconnects again and again. Once the right one is back, clearing
	// reconnects by itself (nats.go used to give up for good after two
	// refusals, leaving clearing up and cut off).
	other, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	clearingUser, _ = other.PublicKey()
	writeConf(terms)
	srv.reload(t)
	waitFor(t, "clearing refused by the reloaded server", 10*time.Second, func() bool { return cl.Ready(ctx) != nil })
	time.Sleep(2 * time.Second) // several refused reconnects
	clearingUser = testClearingUser()
	writeConf(terms)
	srv.reload(t)
	waitFor(t, "clearing reconnected", 20*time.Second, func() bool { return cl.Ready(ctx) == nil })
	tap(t, term.Terminal, "card-after-refusal", fare.Entry)
	waitFor(t, "t1's outbox drained after clearing reconnected", 20*time.Second, func() bool { return term.Pending() == 0 })
	if s := cl.Stats(); s.Applied != 2*n+1 {
		t.Fatalf("after clearing reconnected: applied %d, want %d", s.Applied, 2*n+1)
	}
}

// permCase is one subject a terminal's connection publishes or subscribes to
// (pub or sub), and whether the server must refuse it.
type permCase struct {
	name     string
	pub, sub string
	denied   bool
}

// checkPermissions runs each case on nc, whose nats.ErrorHandler sends to
// asyncErrs: a refused publish or subscription shows as an asynchronous
// permissions violation naming the subject; an allowed one shows nothing.
// lentAPI is the prefix under which clearing's account once lent the
// terminals' account a few JetStream API subjects (before gate feeds): a
// terminal's request there must be refused as any other.
const lentAPI = "$FAREGATE.JS.API"

// lent is subject, a JetStream API subject, under lentAPI.
func lent(subject string) string { return lentAPI + strings.TrimPrefix(subject, "$JS.API") }

func checkPermissions(t *testing.T, nc *nats.Conn, asyncErrs chan error, cases []permCase) {
	t.Helper()
	allowed := map[string]bool{}
	for _, c := range cases {
		allowed[c.pub] = c.pub != "" && !c.denied
	}
	var all []permCase
	for _, c := range cases {
		all = append(all, c)
		// Refused under the prefix the terminals' API was once lent as too.
		if c.denied && strings.HasPrefix(c.pub, "$JS.API.") && !allowed[lent(c.pub)] {
			all = append(all, permCase{name: c.name + " (the terminals' API prefix)", pub: lent(c.pub), denied: true})
		}
	}
	for _, c := range all {
		t.Run(c.name, func(t *testing.T) {
			subject, op := c.pub, "publish"
			if c.sub != "" {
				subject, op = c.sub, "subscription"
				sub, err := nc.SubscribeSync(c.sub)
				if err != nil {
					t.Fatal(err)
				}
				defer sub.Unsubscribe()
			} else if err := nc.Publish(c.pub, []byte("probe")); err != nil {
				t.Fatal(err)
			}
			if err := nc.FlushTimeout(5 * time.Second); err != nil {
				t.Fatal(err)
			}
			// The server answers in order, so a violation has arrived by
			// the flush's PONG; its handler runs a little later.
			wait := 200 * time.Millisecond
			if c.denied {
				wait = 5 * time.Second
			}
			select {
			case err := <-asyncErrs:
				msg := strings.ToLower(err.Error())
				switch {
				case !c.denied:
					t.Fatalf("%s %s allowed expected, got %v", op, subject, err)
				case !errors.Is(err, nats.ErrPermissionViolation) || !strings.Contains(msg, op) || !strings.Contains(msg, strings.ToLower(subject)):
					t.Fatalf("%s %s: %v, want a permissions violation naming it", op, subject, err)
				}
				t.Logf("%s %s: %v", op, subject, err)
			case <-time.After(wait):
				if c.denied {
					t.Fatalf("%s %s was not refused", op, subject)
				}
			}
			if !nc.IsConnected() {
				t.Fatal("connection lost")
			}
		})
	}
}

// terminalOptions are the NATS options of terminal id with key.
func terminalOptions(t testing.TB, key ed25519.PrivateKey, id string) []nats.Option {
	t.Helper()
	ident, err := fare.NewNATSIdentity(key, id)
	if err != nil {
		t.Fatal(err)
	}
	return terminal.NATSOptions(ident, id, "")
}

// natsServerProcess is a nats-server child process.
type natsServerProcess struct {
	cmd  *exec.Cmd
	log  *syncBuffer
	done chan error
}

// startNATSServer runs nats-server -c conf until the test ends.
func startNATSServer(t *testing.T, conf string) *natsServerProcess {
	t.Helper()
	p := &natsServerProcess{log: &syncBuffer{}, done: make(chan error, 1)}
	p.cmd = exec.Command(natsServerBinary(t), "-c", conf)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start nats-server: %v", err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("nats-server log:\n%s", p.log.String())
		}
	})
	p.waitLog(t, "Server is ready", 30*time.Second)
	return p
}

// reload sends SIGHUP (nats-server rereads its configuration) and waits for
// the server to report the reload.
func (p *natsServerProcess) reload(t *testing.T) {
	t.Helper()
	before := strings.Count(p.log.String(), "Reloaded server configuration")
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "nats-server reloading its configuration", 10*time.Second, func() bool {
		if strings.Contains(p.log.String(), "Failed to reload") {
			t.Fatalf("nats-server refused the new configuration:\n%s", p.log.String())
		}
		return strings.Count(p.log.String(), "Reloaded server configuration") > before
	})
}

func (p *natsServerProcess) waitLog(t *testing.T, line string, d time.Duration) {
	t.Helper()
	deadline := time.After(d)
	for !strings.Contains(p.log.String(), line) {
		select {
		case err := <-p.done:
			p.done <- err
			t.Fatalf("nats-server exited (%v):\n%s", err, p.log.String())
		case <-deadline:
			t.Fatalf("nats-server did not log %q in %s:\n%s", line, d, p.log.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// natsServerBinary is the repository's bin/nats-server (make nats-server)
// when it is the release go.mod requires; otherwise the test builds that
// release into a temporary directory.
func natsServerBinary(t *testing.T) string {
	t.Helper()
	bin, err := filepath.Abs(filepath.Join("..", "bin", "nats-server"))
	if err != nil {
		t.Fatal(err)
	}
	want := "nats-server: v" + server.VERSION
	if out, err := exec.Command(bin, "--version").Output(); err == nil && strings.TrimSpace(string(out)) == want {
		return bin
	} else if err == nil {
		t.Logf("%s is %q, want %q: building it", bin, strings.TrimSpace(string(out)), want)
	} else {
		t.Logf("no usable %s (%v): building nats-server v%s (make nats-server puts it there)", bin, err, server.VERSION)
	}
	bin = filepath.Join(t.TempDir(), "nats-server")
	build := exec.Command("go", "build", "-o", bin, "github.com/nats-io/nats-server/v2")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build nats-server: %v\n%s", err, out)
	}
	return bin
}

// syncBuffer is a bytes.Buffer safe for a child's output and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestResendWhileClearingIsDown: a terminal whose events go unconfirmed
// because clearing is down (its NATS server up) does not send its whole
// outbox again every round, each copy kept by the stream: it probes with
// its first unconfirmed event until clearing answers, then the rest goes
// and everything is applied once.
func TestResendWhileClearingIsDown(t *testing.T) {
	dir, keys, url, cfg := externalCity(t, 2)
	reg := cfg.Registry
	cfg.DedupWindow = 100 * time.Millisecond
	cl := startClearing(t, cfg) // makes the streams
	term := startTerminalWith(t, dir, url, reg, keys, "t1", func(c *terminal.Config) { c.ResendAfter = 100 * time.Millisecond })
	defer term.stop(t)
	tap(t, term.Terminal, "card-first", fare.Entry)
	waitFor(t, "the first tap confirmed", 20*time.Second, func() bool { return term.Pending() == 0 })
	cl.stop(t)

	const n = 50
	for i := range n {
		tap(t, term.Terminal, fmt.Sprintf("card-%d", i), fare.Entry)
	}
	sent := term.Published()
	waitFor(t, "four resend rounds", 30*time.Second, func() bool { return term.Probes() >= 4 })
	if p, probes := term.Published()-sent, term.Probes(); p > probes+1 {
		t.Errorf("clearing down: %d publishes after the first sending of %d events, in %d rounds; want one a round", p, n, probes)
	}
	stored := func() uint64 {
		nc := adminConn(t, url)
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		st, err := js.Stream(context.Background(), fare.EventStream)
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Msgs
	}
	if m, most := stored(), uint64(1+n)+term.Probes()+1; m > most {
		t.Errorf("the event stream holds %d messages, want at most %d", m, most)
	}

	cl = startClearing(t, cfg)
	defer cl.stop(t)
	waitFor(t, "outbox drained", 30*time.Second, func() bool { return term.Pending() == 0 })
	checkBooks(t, cl.Store(), map[string]fare.Amount{"metro": (n + 1) * 250})
}

// TestRestartRedeliversUnapplied: events a clearing process fetched and
// never applied (it died with batches in hand) are applied by the next
// process at once. They stayed pending on the consumer until its ack wait
// (30 s), and the next process's first ack (AckAll) of later events
// acknowledged them unapplied: gone from the stream, back only if their
// terminal resent them (an outside review). Here no terminal resends.
func TestRestartRedeliversUnapplied(t *testing.T) {
	_, keys, url, cfg := externalCity(t, 1)
	cl := startClearing(t, cfg) // makes the streams and the consumer
	cl.stop(t)

	nc := terminalConn(t, url, keys["t1"], "t1")
	defer nc.Close()
	const n, fetched = 20, 8
	start := time.Now().Add(-time.Minute)
	for i := 1; i <= n; i++ {
		ev := fare.Event{ID: fare.NewEventID(start.Add(time.Duration(i) * time.Second)), Terminal: "t1", Operator: "metro", Stop: "stop-t1", Gate: "g1",
			Direction: fare.Entry, Media: fare.Card, MediaToken: fmt.Sprintf("card-%d", i), DeviceTime: start.Add(time.Duration(i) * time.Second),
			Decision: fare.Accepted, Sequence: uint64(i)}
		raw, err := fare.Sign(&ev, keys["t1"])
		if err != nil {
			t.Fatal(err)
		}
		publishEvent(t, nc, fare.EventSubject("metro", "t1"), raw)
	}
	// The process that died: it fetched the first events, and applied
	// and acked none of them.
	admin := adminConn(t, url)
	defer admin.Close()
	js, err := jetstream.New(admin)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cons, err := js.Consumer(ctx, fare.EventStream, clearing.EventConsumer)
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(fetched, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	got := 0
	for range batch.Messages() {
		got++
	}
	if got != fetched {
		t.Fatalf("the dead process fetched %d, want %d (%v)", got, fetched, batch.Error())
	}

	var logs syncBuffer
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	cl = startClearing(t, cfg)
	defer cl.stop(t)
	// Well inside the consumer's 30 s ack wait.
	waitFor(t, "every event applied", 10*time.Second, func() bool { return cl.Stats().Applied == n })
	if w := cl.TerminalWatermark("t1"); w != n {
		t.Errorf("watermark %d, want %d", w, n)
	}
	checkBooks(t, cl.Store(), map[string]fare.Amount{"metro": n * 250})
	if !strings.Contains(logs.String(), "delivered again first") || !strings.Contains(logs.String(), fmt.Sprintf("unacked=%d", fetched)) {
		t.Errorf("no log line saying the unapplied events are delivered again:\n%s", logs.String())
	}
}

// startExternalNATS starts a nats-server for reg's terminals, clearing's
// user and v's verifiers, as `faregate nats config` writes it, with
// JetStream under dir, and returns its URL; it stops when the test ends.
func startExternalNATS(t *testing.T, dir string, reg *clearing.Registry, led *ledger.Embedded, v clearing.Verifiers) string {
	t.Helper()
	publish(t, clearing.Config{Registry: reg, Ledger: led})
	ct := clearing.NewChainTerminals(led)
	if err := ct.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	confPath := filepath.Join(dir, "nats.conf")
	conf := fmt.Sprintf("listen: \"127.0.0.1:%d\"\njetstream {\n  store_dir: %q\n}\n", port, filepath.Join(dir, "jetstream")) +
		clearing.NATSServerConfig(ct.All(), testClearingUser(), v)
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	startNATSServer(t, confPath)
	return fmt.Sprintf("nats://127.0.0.1:%d", port)
}

// externalCity is testRegistry(n) on a fresh embedded chain beside a
// nats-server of its own (startExternalNATS), and the configuration of a
// clearing in the test's directory using it.
func externalCity(t *testing.T, n int) (dir string, keys map[string]ed25519.PrivateKey, url string, cfg clearing.Config) {
	t.Helper()
	dir = t.TempDir()
	reg, keys := testRegistry(n)
	led := openLedger(t, filepath.Join(dir, "chain"))
	t.Cleanup(func() { led.Close() })
	url = startExternalNATS(t, dir, reg, led, clearing.Verifiers{})
	return dir, keys, url, clearing.Config{DataDir: filepath.Join(dir, "clearing"), NATSURL: url, NATSSeedFile: clearingSeedFile(t),
		Registry: reg, Ledger: led, Period: time.Hour}
}

// TestClearingWithAnotherUsersSeed: clearing started with a seed the
// servers admit, but not as clearing's (a verifier's), fails at once
// saying so. Every request's answer went unanswered into an inbox that
// user may not read, and clearing gave up a minute later on a timeout
// naming no seed (an outside review).
func TestClearingWithAnotherUsersSeed(t *testing.T) {
	dir := t.TempDir()
	reg, _ := testRegistry(1)
	led := openLedger(t, filepath.Join(dir, "chain"))
	defer led.Close()
	vkp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	vpub, _ := vkp.PublicKey()
	vseed, _ := vkp.Seed()
	seedFile := filepath.Join(dir, "verifier.nk")
	if err := os.WriteFile(seedFile, vseed, 0o600); err != nil {
		t.Fatal(err)
	}
	url := startExternalNATS(t, dir, reg, led, clearing.Verifiers{Partitions: 1, Keys: []clearing.VerifierKey{{Partition: 0, Key: vpub}}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	began := time.Now()
	cl, err := clearing.Open(ctx, clearing.Config{DataDir: filepath.Join(dir, "clearing"), NATSURL: url, NATSSeedFile: seedFile,
		Registry: reg, Ledger: led, Period: time.Hour, Logger: quietLogger(), ConfirmKey: testConfirmKey, VerifierPartitions: 1})
	if err == nil {
		cl.Close()
		t.Fatal("clearing opened with a verifier's seed")
	}
	if took := time.Since(began); took > 20*time.Second || !strings.Contains(err.Error(), "not as clearing's") || !strings.Contains(err.Error(), vpub) {
		t.Fatalf("clearing with a verifier's seed: %v after %s, want at once an error naming the user as not clearing's", err, took.Round(time.Millisecond))
	}
}
