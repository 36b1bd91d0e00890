package clearing_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/fare"
)

// TestCopiedDataDirRefused: a second process on a copy of a running
// clearing's data dir (a restored volume, a failed-over disk still attached
// elsewhere) shares its store id. It used to be let in, split every
// terminal's events with the first, and each confirmed to the gates what
// the other never saw (an outside test lost events for good so). A process
// that renews its owner record holds the consumer: the copy is refused; a
// process of the store that another took over stops applying; a crashed
// one is taken over once its lease has lapsed; one that stopped cleanly
// released it, and the next starts at once.
func TestCopiedDataDirRefused(t *testing.T) {
	dir, url, keys, config := ownedStoreCity(t)
	original := filepath.Join(dir, "clearing")
	copyOf := func(name string) string {
		to := filepath.Join(dir, name)
		if err := os.CopyFS(to, os.DirFS(original)); err != nil {
			t.Fatal(err)
		}
		return to
	}

	// The store made and stopped cleanly, then copied.
	first := startClearing(t, config(original, 2*time.Second))
	first.stop(t)
	twin := copyOf("twin")
	first = startClearing(t, config(original, 2*time.Second))
	defer first.stop(t)

	start := time.Now()
	if cl, err := clearing.Open(context.Background(), config(twin, 2*time.Second)); !errors.Is(err, clearing.ErrStoreRunning) {
		if cl != nil {
			cl.Close()
		}
		t.Fatalf("a copy of a running store's data dir: %v, want ErrStoreRunning", err)
	} else if !strings.Contains(err.Error(), original) {
		t.Errorf("the refusal does not name the running store's data dir: %v", err)
	}
	if waited := time.Since(start); waited > 5*time.Second {
		t.Errorf("the copy was refused after %s, want within the lease (2s)", waited)
	}

	// The first is frozen past its lease (its renewals stop): an event
	// that arrives meanwhile waits, uncommitted. Another process of the
	// store then takes the consumer (here: its record written as if it
	// had): the first stops, and the event was never applied by it.
	admin := adminConn(t, url)
	defer admin.Close()
	_, before := t1Entry(t, keys, "card-before", 1)
	publishEvent(t, admin, fare.EventSubject("metro", "t1"), before)
	waitFor(t, "an event applied before the freeze", 10*time.Second, func() bool { return first.Stats().Applied == 1 })
	// t1 asks how far it is confirmed (as a gate does, into its inbox).
	askWatermark := func() bool {
		t.Helper()
		reply := fare.TerminalInboxPrefix("t1") + ".owner-test." + nats.NewInbox()[len(nats.InboxPrefix):]
		sub, err := admin.SubscribeSync(reply)
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
		if err := admin.PublishRequest(fare.WatermarkSubject("t1"), reply, fare.WatermarkRequest(0, nil)); err != nil {
			t.Fatal(err)
		}
		_, err = sub.NextMsg(time.Second)
		return err == nil
	}
	if !askWatermark() {
		t.Fatal("no confirmation answered before the freeze")
	}
	first.PauseLeaseRenewals(true)
	time.Sleep(2 * time.Second)
	// Past its lease it confirms nothing: a copy that took over may lack
	// what it would confirm, and the gate would delete it.
	if askWatermark() {
		t.Error("a process frozen past its lease answered a confirmation request")
	}
	// It does not seal or anchor its open period: its batch ids would be
	// the next owner's (an outside chaos test saw one cut off from NATS,
	// with no event to apply, seal and anchor a batch after the takeover,
	// the new owner's conflicting on chain for good).
	sctx, scancel := context.WithTimeout(context.Background(), 2*time.Second)
	err := first.Settle(sctx)
	scancel()
	if st := first.Stats(); st.BatchesSealed != 0 || st.BatchesCommitted != 0 {
		t.Fatalf("a process frozen past its lease settled: %v, %d sealed, %d committed; want nothing sealed or anchored", err, st.BatchesSealed, st.BatchesCommitted)
	}
	ev, raw := t1Entry(t, keys, "card-frozen", 2)
	publishEvent(t, admin, fare.EventSubject("metro", "t1"), raw)
	time.Sleep(time.Second)
	if n := first.Stats().Applied; n != 1 {
		t.Fatalf("a process frozen past its lease applied %d events, want only the one before", n)
	}

	js, err := jetstream.New(admin)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(context.Background(), clearing.OwnersBucket)
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(context.Background(), "consumer."+clearing.EventConsumer)
	if err != nil {
		t.Fatal(err)
	}
	var owner clearing.ConsumerOwner
	if err := json.Unmarshal(e.Value(), &owner); err != nil || owner.Process == "" || owner.DataDir != original {
		t.Fatalf("owner record %s (%v), want the running process's", e.Value(), err)
	}
	owner.Process = "0x0123456789abcdef"
	b, _ := json.Marshal(owner)
	if _, err := kv.Put(context.Background(), "consumer."+clearing.EventConsumer, b); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-first.done:
		if !errors.Is(err, clearing.ErrLeaseLost) {
			t.Fatalf("the process whose consumer was taken over ended with %v, want ErrLeaseLost", err)
		}
		if _, err := first.Store().Event(ev.ID); err == nil || first.Stats().Applied != 1 {
			t.Fatalf("the superseded process applied the event that came while it was frozen (%v)", err)
		}
		first.cancel = nil
		first.Close()
	case <-time.After(10 * time.Second):
		t.Fatal("the process whose consumer was taken over kept running")
	}

	// That other process "crashed": it renews nothing. A copy takes the
	// consumer over once the lease has lapsed.
	start = time.Now()
	cl, err := clearing.Open(context.Background(), config(copyOf("after-crash"), time.Second))
	if err != nil {
		t.Fatalf("a process of the store after the holder crashed: %v", err)
	}
	if waited := time.Since(start); waited < time.Second {
		t.Errorf("took the consumer over after %s, before the lease lapsed", waited)
	}
	// Stopped cleanly, it released the consumer: the next starts at once.
	cl.Close()
	start = time.Now()
	cl, err = clearing.Open(context.Background(), config(copyOf("after-clean-stop"), time.Minute))
	if err != nil {
		t.Fatalf("a process of the store after a clean stop: %v", err)
	}
	cl.Close()
	if waited := time.Since(start); waited > 20*time.Second {
		t.Errorf("after a clean stop the next process waited %s (the lease is a minute): the consumer was not released", waited)
	}
}

// startSharedNATS starts a NATS server admitting clearing's user only,
// outside any clearing's data dir (as an external server or cluster is),
// stopped when the test ends, and returns its URL.
func startSharedNATS(t *testing.T, dir string) string {
	t.Helper()
	srv, err := clearing.StartEmbeddedNATS(clearing.EmbeddedOptions{Dir: filepath.Join(dir, "nats"), Port: -1,
		Users: []*server.NkeyUser{{Nkey: testClearingUser()}}, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	return srv.ClientURL()
}

// t1Entry is an entry of card at testRegistry's terminal t1 under seq,
// signed with its key: the event and its signed bytes.
func t1Entry(t *testing.T, keys map[string]ed25519.PrivateKey, card string, seq uint64) (fare.Event, []byte) {
	t.Helper()
	ev := fare.Event{ID: fare.NewEventID(time.Now()), Terminal: "t1", Operator: "metro", Stop: "stop-t1", Gate: "g1", Direction: fare.Entry,
		Media: fare.Card, MediaToken: card, DeviceTime: time.Now(), Decision: fare.Accepted, Sequence: seq}
	raw, err := fare.Sign(&ev, keys["t1"])
	if err != nil {
		t.Fatal(err)
	}
	return ev, raw
}

// TestNATSWithoutJetStream: a NATS server without JetStream is named as
// such at start (it was "no responders available for request" about the
// quarantine stream).
func TestNATSWithoutJetStream(t *testing.T) {
	dir := t.TempDir()
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, Nkeys: []*server.NkeyUser{{Nkey: testClearingUser()}}, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	defer srv.Shutdown()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	reg, _ := testRegistry(1)
	led := openLedger(t, filepath.Join(dir, "chain"))
	defer led.Close()
	cl, err := clearing.Open(context.Background(), clearing.Config{DataDir: filepath.Join(dir, "clearing"), NATSURL: srv.ClientURL(),
		NATSSeedFile: clearingSeedFile(t), Registry: reg, Ledger: led, Period: time.Hour, Logger: quietLogger(), ConfirmKey: testConfirmKey})
	if err == nil {
		cl.Close()
		t.Fatal("clearing opened on a NATS server without JetStream")
	}
	if !strings.Contains(err.Error(), "JetStream is not enabled") {
		t.Errorf("clearing on a server without JetStream: %v, want it named", err)
	}
}

// TestStaleCopyRefused: a copy of the store taken before its holder applied
// (and confirmed to the gates, which deleted them) more events is refused,
// even once the holder stopped renewing: taken over, those events would be
// lost for good (an outside test lost 32 taps so, the gates stuck behind a
// gap for good).
func TestStaleCopyRefused(t *testing.T) {
	dir, url, keys, leased := ownedStoreCity(t)
	config := func(data string) clearing.Config { return leased(data, time.Second) }
	original := filepath.Join(dir, "clearing")
	first := startClearing(t, config(original))
	first.stop(t)
	stale := filepath.Join(dir, "stale")
	if err := os.CopyFS(stale, os.DirFS(original)); err != nil {
		t.Fatal(err)
	}
	first = startClearing(t, config(original))
	admin := adminConn(t, url)
	defer admin.Close()
	for seq := uint64(1); seq <= 3; seq++ {
		_, raw := t1Entry(t, keys, "card-1", seq)
		publishEvent(t, admin, fare.EventSubject("metro", "t1"), raw)
	}
	waitFor(t, "3 events applied", 10*time.Second, func() bool { return first.Stats().Applied == 3 })
	time.Sleep(time.Second)        // renewed since (every quarter of the lease)
	first.PauseLeaseRenewals(true) // then "crashed": renews nothing
	time.Sleep(1500 * time.Millisecond)
	cl, err := clearing.Open(context.Background(), config(stale))
	if err == nil {
		cl.Close()
		t.Fatal("a copy older than the holder's applied events took the consumer over")
	}
	if !errors.Is(err, clearing.ErrStoreStale) || !strings.Contains(err.Error(), "it has applied 0 events") || !strings.Contains(err.Error(), "had applied 3") {
		t.Fatalf("the stale copy: %v, want ErrStoreStale naming 0 against 3", err)
	}
	first.PauseLeaseRenewals(false)
	first.stop(t)
	// The holder's own data dir, current, starts at once after its clean stop.
	first = startClearing(t, config(original))
	first.stop(t)
}

// ownedStoreCity is what the ownership tests share: a NATS server outside
// clearing at url (so that two processes of one store meet there), a chain,
// one terminal, and the configuration of a clearing on data with an owner
// lease of lease.
func ownedStoreCity(t *testing.T) (dir, url string, keys map[string]ed25519.PrivateKey, config func(data string, lease time.Duration) clearing.Config) {
	t.Helper()
	dir = t.TempDir()
	url = startSharedNATS(t, dir)
	reg, keys := testRegistry(1)
	led := openLedger(t, filepath.Join(dir, "chain"))
	t.Cleanup(func() { led.Close() })
	seed := clearingSeedFile(t)
	return dir, url, keys, func(data string, lease time.Duration) clearing.Config {
		return clearing.Config{DataDir: data, NATSURL: url, NATSSeedFile: seed, Registry: reg, Ledger: led, Period: time.Hour,
			Logger: quietLogger(), ConfirmKey: testConfirmKey, OwnerLease: lease}
	}
}

// TestEmbeddedStoreFailureStopsClearing: when the embedded NATS server's
// JetStream store takes no write for a while (here its owners bucket is
// gone; an outside red team ran the process out of file descriptors, an
// error the server's store keeps until it restarts), clearing stops with
// an error saying so, for its supervisor to restart it, rather than
// applying nothing for ever.
func TestEmbeddedStoreFailureStopsClearing(t *testing.T) {
	_, _, _, cl := startCityWith(t, 1, func(c *clearing.Config) { c.OwnerLease = 400 * time.Millisecond })
	admin := adminConn(t, cl.NATSURL())
	defer admin.Close()
	ajs, _ := jetstream.New(admin)
	if err := ajs.DeleteKeyValue(context.Background(), clearing.OwnersBucket); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-cl.done:
		if err == nil || !strings.Contains(err.Error(), "the embedded NATS server's JetStream store has taken no write") {
			t.Fatalf("clearing stopped with %v, want the store's failure named", err)
		}
		cl.done <- nil // seen: the cleanup's stop closes the rest
	case <-time.After(30 * time.Second):
		t.Fatal("clearing still running 30 s after its embedded store stopped taking writes")
	}
}

// TestOwnerRecordFloodDoesNotStopClearing, from a stolen terminal key's
// side: feed requests whose answers and deliveries are aimed at the owner
// record, as fast as four connections send them, for longer than the
// embedded store's failure bound (clearing answers only into the
// terminal's inbox, and bars the flooder), with a party of full access
// writing junk over the record as well. The
// store takes every write (the renewals only lose races), so clearing
// keeps running and applying, and puts its record back (an outside
// recheck stopped clearing this way every 75 seconds).
func TestOwnerRecordFloodDoesNotStopClearing(t *testing.T) {
	_, _, keys, cl := startCityWith(t, 1, func(c *clearing.Config) { c.OwnerLease = 400 * time.Millisecond })
	until := time.Now().Add(5 * time.Second) // 50 renewals, twice the bound
	record := "$KV." + clearing.OwnersBucket + ".consumer.clearing"
	feedReq, _ := json.Marshal(fare.GateFeedRequest{Deliver: record})
	var wg sync.WaitGroup
	var floods []*nats.Conn
	for range 4 { // connected first: the flooder is barred within milliseconds
		nc := terminalConn(t, cl.NATSURL(), keys["t1"], "t1")
		defer nc.Close()
		floods = append(floods, nc)
	}
	writer := adminConn(t, cl.NATSURL()) // connected before the flood's bar reloads the server's users
	defer writer.Close()
	for _, nc := range floods {
		wg.Go(func() {
			for time.Now().Before(until) {
				if err := nc.PublishRequest(fare.GateFeedSubject("t1", fare.FeedDeny), record, feedReq); err != nil {
					return
				}
			}
			nc.Flush()
		})
	}
	wg.Go(func() {
		for time.Now().Before(until) {
			if err := writer.Publish(record, []byte(`{"junk":true}`)); err != nil {
				return
			}
			time.Sleep(time.Millisecond)
		}
		writer.Flush()
	})
	wg.Wait()
	select {
	case err := <-cl.done:
		cl.done <- err
		t.Fatalf("clearing stopped under a flood of replies aimed at its owner record: %v", err)
	case <-time.After(2 * time.Second):
	}
	admin := adminConn(t, cl.NATSURL())
	defer admin.Close()
	_, raw := t1Entry(t, keys, "card-1", 1)
	publishEvent(t, admin, fare.EventSubject("metro", "t1"), raw)
	waitFor(t, "an event applied after the flood", 10*time.Second, func() bool { return cl.Stats().Applied == 1 })
}

// TestRunLongAfterOpenApplies: a Run that starts more than three quarters
// of a lease after Open claimed the consumer (a simulator enrolling its
// faces in between, a slow start) renews the owner record at once, rather
// than holding every commit until the first quarter-lease tick (a CI run
// saw a city's first seconds applied late and sealed into one batch).
func TestRunLongAfterOpenApplies(t *testing.T) {
	dir := t.TempDir()
	reg, keys := testRegistry(1)
	led := openLedger(t, filepath.Join(dir, "chain"))
	t.Cleanup(func() { led.Close() })
	cfg := clearing.Config{DataDir: filepath.Join(dir, "clearing"), Registry: reg, Ledger: led, Period: time.Hour,
		NATSPort: -1, Logger: quietLogger(), ConfirmKey: testConfirmKey, NATSSeedFile: clearingSeedFile(t), OwnerLease: time.Minute}
	publish(t, cfg)
	cl, err := clearing.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	cl.AgeLease(50 * time.Second) // claimed 50 s ago: past 3/4 of the lease, the first tick 15 s away
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{Clearing: cl, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- cl.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	admin := adminConn(t, cl.NATSURL())
	defer admin.Close()
	_, raw := t1Entry(t, keys, "card-late-run", 1)
	publishEvent(t, admin, fare.EventSubject("metro", "t1"), raw)
	waitFor(t, "the event applied before the lease's first tick", 10*time.Second, func() bool { return cl.Stats().Applied == 1 })
}

// TestTwoStoresNeverRunTogether, from an operator's side: two clearing
// stores (each its own data dir) on one NATS, started at the same moment,
// or the second started after the running one's consumer was deleted. The
// second may take the consumer (the first's was gone, or not yet made),
// but then the first stops with ErrConsumerOwned before applying anything
// more: never do both apply (an outside review saw both run, the owner
// record overwritten 5,500 times a second, every terminal's events split
// between them).
func TestTwoStoresNeverRunTogether(t *testing.T) {
	const lease = time.Second
	// applyAll publishes n events of t1 from seq and waits until the
	// stores between them applied them; it returns what each applied.
	applyAll := func(t *testing.T, url string, keys map[string]ed25519.PrivateKey, from, n uint64, a, b *clearing.Clearing) (uint64, uint64) {
		t.Helper()
		admin := adminConn(t, url)
		defer admin.Close()
		applied := func() (uint64, uint64) {
			var x, y uint64
			if a != nil {
				x = a.Stats().Applied
			}
			if b != nil {
				y = b.Stats().Applied
			}
			return x, y
		}
		x0, y0 := applied()
		for seq := from; seq < from+n; seq++ {
			_, raw := t1Entry(t, keys, "card-"+strings.Repeat("x", int(seq%7)), seq)
			publishEvent(t, admin, fare.EventSubject("metro", "t1"), raw)
		}
		waitFor(t, "the events applied", 30*time.Second, func() bool { x, y := applied(); return x+y >= x0+y0+n })
		x, y := applied()
		return x - x0, y - y0
	}
	t.Run("started together", func(t *testing.T) {
		for round := range 4 {
			dir, url, keys, config := ownedStoreCity(t)
			ca, cb := config(filepath.Join(dir, "a"), lease), config(filepath.Join(dir, "b"), lease)
			publish(t, ca)
			own := *cb.Registry // each process reads its own (Open indexes it)
			cb.Registry = &own
			var wg sync.WaitGroup
			var cls [2]*clearing.Clearing
			var errs [2]error
			gate := make(chan struct{})
			for i, cfg := range []clearing.Config{ca, cb} {
				wg.Go(func() {
					<-gate
					cfg.NATSPort = -1
					cls[i], errs[i] = clearing.Open(context.Background(), cfg)
				})
			}
			close(gate)
			wg.Wait()
			ctx, cancel := context.WithCancel(context.Background())
			done := [2]chan error{make(chan error, 1), make(chan error, 1)}
			for i, c := range cls {
				if errs[i] != nil {
					if !errors.Is(errs[i], clearing.ErrConsumerOwned) {
						t.Errorf("round %d: store %d refused with %v, want ErrConsumerOwned", round, i, errs[i])
					}
					done[i] <- errs[i]
					continue
				}
				go func() { done[i] <- c.Run(ctx) }()
			}
			// At most one may still run once the first renewals are done.
			time.Sleep(2 * lease)
			var running []int
			for i := range cls {
				select {
				case err := <-done[i]:
					if !errors.Is(err, clearing.ErrConsumerOwned) {
						t.Errorf("round %d: store %d stopped with %v, want ErrConsumerOwned", round, i, err)
					}
					done[i] <- err
				default:
					running = append(running, i)
				}
			}
			if len(running) != 1 {
				t.Fatalf("round %d: %d stores running on one event consumer (open errors %v)", round, len(running), errs)
			}
			only := cls[running[0]]
			if _, _ = applyAll(t, url, keys, 1, 20, only, nil); only.Stats().Applied != 20 {
				t.Errorf("round %d: the running store applied %d of 20", round, only.Stats().Applied)
			}
			cancel()
			for i, c := range cls {
				if c != nil {
					<-done[i]
					c.Close()
				}
			}
		}
	})
	t.Run("consumer deleted while running", func(t *testing.T) {
		dir, url, keys, config := ownedStoreCity(t)
		first := startClearing(t, config(filepath.Join(dir, "a"), lease))
		if a, _ := applyAll(t, url, keys, 1, 10, first.Clearing, nil); a != 10 {
			t.Fatalf("the first store applied %d of 10", a)
		}
		admin := adminConn(t, url)
		defer admin.Close()
		ajs, _ := jetstream.New(admin)
		if err := ajs.DeleteConsumer(context.Background(), fare.EventStream, clearing.EventConsumer); err != nil {
			t.Fatal(err)
		}
		second := startClearing(t, config(filepath.Join(dir, "b"), lease))
		defer second.stop(t)
		select {
		case err := <-first.done:
			if !errors.Is(err, clearing.ErrConsumerOwned) {
				t.Fatalf("the first store stopped with %v, want ErrConsumerOwned", err)
			}
			first.done <- nil // seen: the cleanup's stop closes the rest
		case <-time.After(10 * lease):
			t.Fatal("the first store still runs beside the store that claimed its consumer")
		}
		before := first.Stats().Applied
		applyAll(t, url, keys, 11, 10, nil, second.Clearing)
		if first.Stats().Applied != before {
			t.Errorf("the stopped store applied %d more", first.Stats().Applied-before)
		}
	})
}
