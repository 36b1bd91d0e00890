package clearing_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"testing"
	"time"

	"github.com/hdevalence/ed25519consensus"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/clearing/fares"
	"github.com/faregate/faregate/clearing/fares/gtfs"
	"github.com/faregate/faregate/fare"
	"github.com/faregate/faregate/ledger"
)

// signedEvents makes n events spread over the test terminals.
func signedEvents(b *testing.B, n int, keys map[string]ed25519.PrivateKey, reg *clearing.Registry) [][]byte {
	out := make([][]byte, n)
	seqs := map[string]uint64{}
	for i := range n {
		rt := reg.Terminals[i%len(reg.Terminals)]
		seqs[rt.ID]++
		ev := fare.Event{ID: fare.NewEventID(time.Now()), Terminal: rt.ID, Operator: rt.Operator, Stop: rt.Stop, Gate: "g1",
			Direction: fare.Validate, Media: fare.Card, MediaToken: fmt.Sprintf("card-%d", i%5000), DeviceTime: time.Now(),
			Decision: fare.Accepted, Sequence: seqs[rt.ID]}
		raw, err := fare.Sign(&ev, keys[rt.ID])
		if err != nil {
			b.Fatal(err)
		}
		out[i] = raw
	}
	return out
}

func publishAll(b *testing.B, bc *benchClearing, reg *clearing.Registry, events [][]byte) {
	subjects := make([]string, len(events))
	for i := range events {
		rt := reg.Terminals[i%len(reg.Terminals)]
		subjects[i] = fare.EventSubject(rt.Operator, rt.ID)
	}
	prePublish(b, bc, subjects, events)
}

// prePublish publishes events on their subjects as terminals do (plain
// publishes: the event stream sends no acks) and waits until the stream
// holds them all.
func prePublish(b *testing.B, bc *benchClearing, subjects []string, events [][]byte) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := bc.js.Stream(ctx, fare.EventStream)
	if err != nil {
		b.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		b.Fatal(err)
	}
	want := info.State.Msgs + uint64(len(events))
	for i, raw := range events {
		if err := bc.nc.Publish(subjects[i], raw); err != nil {
			b.Fatal(err)
		}
	}
	if err := bc.nc.FlushTimeout(time.Minute); err != nil {
		b.Fatal(err)
	}
	for info.State.Msgs < want {
		if ctx.Err() != nil {
			b.Fatalf("the event stream holds %d messages, want %d", info.State.Msgs, want)
		}
		time.Sleep(10 * time.Millisecond)
		if info, err = st.Info(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkClearingThroughput measures verified, deduplicated, durably
// applied events per second: events are published to JetStream first, then
// the clock runs while clearing consumes, verifies, applies with synced
// group commits and acks them all.
func BenchmarkClearingThroughput(b *testing.B) {
	reg, keys := testRegistry(64)
	const perOp = 20000
	for b.Loop() {
		b.StopTimer()
		bc := openBenchClearing(b, reg, nil)
		cl := bc.cl
		publishAll(b, bc, reg, signedEvents(b, perOp, keys, reg))
		b.StartTimer()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		start := time.Now()
		go func() { done <- cl.Run(ctx) }()
		for cl.Stats().Applied < perOp {
			time.Sleep(time.Millisecond)
		}
		el := time.Since(start)
		b.StopTimer()
		cancel()
		<-done
		b.ReportMetric(perOp/el.Seconds(), "events/s")
		bc.close()
		b.StartTimer()
	}
}

// BenchmarkSecurityCost measures clearing's throughput (as
// BenchmarkClearingThroughput) with NATS authentication, TLS and signed
// confirmations on, against the same run with all three off, alternating
// the two in every iteration so both see the same machine.
func BenchmarkSecurityCost(b *testing.B) {
	reg, keys := testRegistry(64)
	const perRun = 20000
	events := signedEvents(b, perRun, keys, reg)
	certs := writeTestCerts(b, b.TempDir())
	run := func(secure bool) time.Duration {
		el, _ := timeClearing(b, reg, events, func(cfg *clearing.Config) func(string) *nats.Conn {
			if !secure {
				clearing.WithoutSecurity(cfg)
				return func(url string) *nats.Conn {
					nc, err := nats.Connect(url)
					if err != nil {
						b.Fatal(err)
					}
					return nc
				}
			}
			cfg.NATSTLSCert, cfg.NATSTLSKey = certs.Cert, certs.Key
			return func(url string) *nats.Conn { return adminConn(b, url, nats.RootCAs(certs.CA)) }
		})
		return el
	}
	var plain, secure []float64
	for b.Loop() {
		plain = append(plain, perRun/run(false).Seconds())
		secure = append(secure, perRun/run(true).Seconds())
	}
	p, s := median(plain), median(secure)
	b.ReportMetric(p, "plain-events/s")
	b.ReportMetric(s, "secure-events/s")
	b.ReportMetric(100*(1-s/p), "cost-%")
}

// timeClearing opens a clearing house on a fresh chain and store (edit
// adjusts its configuration and says how to connect to its NATS),
// publishes events on their own subjects, and times Run from its start
// until every event is applied.
func timeClearing(b *testing.B, reg *clearing.Registry, events [][]byte, edit func(*clearing.Config) func(url string) *nats.Conn) (time.Duration, clearing.Stats) {
	bc := openBenchClearing(b, reg, edit)
	defer bc.close()
	cl := bc.cl
	subjects := make([]string, len(events))
	for i, raw := range events {
		ev, err := fare.Decode(raw)
		if err != nil {
			b.Fatal(err)
		}
		subjects[i] = fare.EventSubject(ev.Operator, ev.Terminal)
	}
	prePublish(b, bc, subjects, events)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	// The run before left garbage (a priced run's rider cache and memo):
	// collect it now, or this run pays for the last one's heap.
	runtime.GC()
	start, cpu0 := time.Now(), processCPU()
	go func() { done <- cl.Run(ctx) }()
	for deadline := time.Now().Add(2 * time.Minute); cl.Stats().Applied < uint64(len(events)); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatalf("%+v after 2 minutes", cl.Stats())
		}
	}
	el := time.Since(start)
	lastRunCPU = processCPU() - cpu0
	cancel()
	<-done
	if afterRun != nil {
		afterRun(cl)
	}
	return el, cl.Stats()
}

// benchClearing is a clearing the benchmarks time: a fresh embedded chain
// with the registry published, clearing opened on it with the benchmarks'
// settings, and a JetStream connection to it.
type benchClearing struct {
	cl  *clearing.Clearing
	led *ledger.Embedded
	nc  *nats.Conn
	js  jetstream.JetStream
}

// openBenchClearing opens a benchClearing for reg; edit, when not nil, may
// change the configuration and return how to connect (nil: adminConn).
func openBenchClearing(b *testing.B, reg *clearing.Registry, edit func(*clearing.Config) func(url string) *nats.Conn) *benchClearing {
	dir := b.TempDir()
	bc := &benchClearing{led: openLedger(b, filepath.Join(dir, "chain"))}
	publish(b, clearing.Config{Registry: reg, Ledger: bc.led})
	cfg := clearing.Config{DataDir: filepath.Join(dir, "clearing"), NATSPort: -1, ConfirmKey: testConfirmKey, NATSSeedFile: clearingSeedFile(b),
		Registry: reg, Ledger: bc.led, Period: time.Hour, Logger: quietLogger()}
	connect := func(url string) *nats.Conn { return adminConn(b, url) }
	if edit != nil {
		if c := edit(&cfg); c != nil {
			connect = c
		}
	}
	var err error
	if bc.cl, err = clearing.Open(context.Background(), cfg); err != nil {
		bc.led.Close()
		b.Fatal(err)
	}
	bc.nc = connect(bc.cl.NATSURL())
	bc.js, _ = jetstream.New(bc.nc, jetstream.WithPublishAsyncMaxPending(4096))
	return bc
}

func (bc *benchClearing) close() {
	bc.nc.Close()
	bc.cl.Close()
	bc.led.Close()
}

// lastRunCPU is the process CPU seconds (user and GC) of timeClearing's
// last timed window: clearing, its NATS server and Badger together.
var lastRunCPU float64

// afterRun, when set, sees each timed clearing after its run.
var afterRun func(*clearing.Clearing)

func median(v []float64) float64 {
	v = slices.Clone(v)
	slices.Sort(v)
	return v[len(v)/2]
}

// BenchmarkVerify compares, per signature, single crypto/ed25519
// verification, ed25519consensus batches (what clearing used), and
// clearing's verifyBatch (curve25519-voi batches over expanded keys, ZIP-215)
// on one core and on all of them, for 64 and 1000 events (the default fetch).
func BenchmarkVerify(b *testing.B) {
	reg, keys := testRegistry(64)
	events := signedEvents(b, 64, keys, reg)
	sigs := make([]*fare.Signed, len(events))
	for i, raw := range events {
		sigs[i], _ = fare.Decode(raw)
	}
	pub := func(s *fare.Signed) ed25519.PublicKey { t, _ := reg.TerminalKey(s.Terminal); return t.PublicKey }
	b.Run("ed25519-single", func(b *testing.B) {
		i := 0
		for b.Loop() {
			s := sigs[i%len(sigs)]
			if !ed25519.Verify(pub(s), s.Message(), s.Signature()) {
				b.Fatal("bad")
			}
			i++
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sig/s")
	})
	b.Run("consensus-batch64", func(b *testing.B) {
		for b.Loop() {
			bv := ed25519consensus.NewPreallocatedBatchVerifier(len(sigs))
			for _, s := range sigs {
				bv.Add(pub(s), s.Message(), s.Signature())
			}
			if !bv.Verify() {
				b.Fatal("bad")
			}
		}
		b.ReportMetric(float64(b.N*len(sigs))/b.Elapsed().Seconds(), "sig/s")
	})
	for _, n := range []int{64, 1000} {
		pubs := make([]ed25519.PublicKey, n)
		msgs, sigv := make([][]byte, n), make([][]byte, n)
		for i := range n {
			s := sigs[i%len(sigs)]
			pubs[i], msgs[i], sigv[i] = pub(s), s.Message(), s.Signature()
		}
		for _, workers := range []int{1, runtime.GOMAXPROCS(0)} {
			b.Run(fmt.Sprintf("clearing-voi-batch%d-workers%d", n, workers), func(b *testing.B) {
				for b.Loop() {
					for _, ok := range clearing.VerifyBatch(pubs, msgs, sigv, workers) {
						if !ok {
							b.Fatal("bad")
						}
					}
				}
				b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "sig/s")
			})
		}
	}
}

// BenchmarkJetStreamPublish is the raw publish rate with Nats-Msg-Id into
// the event stream of an embedded server, as terminals publish (plain
// publishes, no acks), until the stream holds them: the transport's
// ceiling. From clearing's account, where the stream is, and from a
// terminal's connection in the terminals' account, whose events reach it
// through the accounts' stream import (NATSAccounts): what the accounts
// cost a message.
func BenchmarkJetStreamPublish(b *testing.B) {
	reg, keys := testRegistry(64)
	bc := openBenchClearing(b, reg, nil)
	defer bc.close()
	events := signedEvents(b, 1000, keys, reg)
	ctx := context.Background()
	st, err := bc.js.Stream(ctx, fare.EventStream)
	if err != nil {
		b.Fatal(err)
	}
	for _, from := range []string{"clearing-account", "terminals-account"} {
		b.Run(from, func(b *testing.B) {
			// A terminal subject of each (the stream takes at most
			// 100,000 messages a subject).
			nc, term := bc.nc, "t2"
			if from == "terminals-account" {
				nc, term = terminalConn(b, bc.cl.NATSURL(), keys["t1"], "t1"), "t1"
				defer nc.Close()
			}
			rt, _ := reg.TerminalKey(term)
			subject := fare.EventSubject(rt.Operator, term)
			before, err := st.Info(ctx)
			if err != nil {
				b.Fatal(err)
			}
			i := 0
			for b.Loop() {
				m := nats.NewMsg(subject)
				m.Data = events[i%len(events)]
				m.Header.Set(nats.MsgIdHdr, fmt.Sprintf("%s-%d-%d", from, b.N, i)) // new ids each run: none deduplicated
				if err := nc.PublishMsg(m); err != nil {
					b.Fatal(err)
				}
				i++
			}
			if err := nc.FlushTimeout(time.Minute); err != nil {
				b.Fatal(err)
			}
			for deadline := time.Now().Add(time.Minute); ; time.Sleep(5 * time.Millisecond) {
				info, err := st.Info(ctx)
				if err != nil {
					b.Fatal(err)
				}
				if info.State.LastSeq-before.State.LastSeq >= uint64(i) {
					break
				}
				if time.Now().After(deadline) {
					b.Fatalf("the stream holds %d of %d published", info.State.LastSeq-before.State.LastSeq, i)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msg/s")
		})
	}
}

// cityEvents makes n signed events of riders travelling the simulator city
// of journeys/testdata/city (4 gates at each of its 12 stops): metro
// entries and exits, bus and tram validations, 5,000 riders, device times
// from 07:00 on a Wednesday, 2 s apart (peak and off-peak, transfers,
// riders reaching the daily cap).
func cityEvents(b *testing.B, n int) (*clearing.Registry, [][]byte) {
	reg := &clearing.Registry{Currency: "EUR", Operators: []clearing.OperatorConfig{
		{ID: "metro", Name: "Metro", FlatFare: 250}, {ID: "bus", Name: "Bus", FlatFare: 180}, {ID: "tram", Name: "Tram", FlatFare: 200}}}
	keys := map[string]ed25519.PrivateKey{}
	byOp := map[string][]string{}
	for _, op := range []string{"metro", "bus", "tram"} {
		for s := 1; s <= 4; s++ {
			for g := 1; g <= 4; g++ {
				id := fmt.Sprintf("%s-s%02d-g%d", op, s, g)
				seed := make([]byte, ed25519.SeedSize)
				copy(seed, id)
				keys[id] = ed25519.NewKeyFromSeed(seed)
				reg.Terminals = append(reg.Terminals, provenTerminal(keys[id], id, op, fmt.Sprintf("%s-s%02d", op, s)))
				reg.Legs = append(reg.Legs, clearing.TerminalLeg{Terminal: id, Network: op, Route: op + "-L1"})
				byOp[op] = append(byOp[op], id)
			}
		}
	}
	if err := reg.Validate(); err != nil {
		b.Fatal(err)
	}
	berlin, _ := time.LoadLocation("Europe/Berlin")
	at := time.Date(2026, 12, 2, 7, 0, 0, 0, berlin)
	rng := rand.New(rand.NewPCG(11, 12))
	inMetro := map[int]bool{}
	seqs := map[string]uint64{}
	out := make([][]byte, 0, n)
	for range n {
		rider := rng.IntN(5000)
		op, dir := []string{"metro", "bus", "tram"}[rng.IntN(3)], fare.Validate
		switch {
		case inMetro[rider]:
			op, dir = "metro", fare.Exit
			delete(inMetro, rider)
		case op == "metro":
			dir = fare.Entry
			inMetro[rider] = true
		}
		term := byOp[op][rng.IntN(len(byOp[op]))]
		rt, _ := reg.TerminalKey(term)
		seqs[term]++
		ev := fare.Event{ID: fare.NewEventID(at), Terminal: term, Operator: op, Stop: rt.Stop, Gate: "g1", Direction: dir, Media: fare.Card,
			MediaToken: fmt.Sprintf("card-%d", rider), DeviceTime: at, Decision: fare.Accepted, Sequence: seqs[term]}
		raw, err := fare.Sign(&ev, keys[term])
		if err != nil {
			b.Fatal(err)
		}
		out = append(out, raw)
		at = at.Add(2 * time.Second)
	}
	return reg, out
}

// pricingEvents is how many events each run of BenchmarkPricingCost
// applies; a variable so a quick check can lower it.
var pricingEvents = 20000

// BenchmarkPricingCost measures clearing's throughput (as
// BenchmarkClearingThroughput) pricing every tap live from the city's GTFS
// feed, against the same events at flat fares, alternating the two in
// every iteration.
func BenchmarkPricingCost(b *testing.B) {
	perRun := pricingEvents
	reg, events := cityEvents(b, perRun)
	feed, err := gtfs.LoadPath("journeys/testdata/city")
	if err != nil {
		b.Fatal(err)
	}
	run := func(priced, serial bool) (el time.Duration, st clearing.Stats) {
		// A CPU profile (-cpuprofile) tells the runs apart by the label
		// "run" (go tool pprof -tagfocus run=priced): every goroutine of
		// the run's clearing, NATS server and store inherits it.
		label := "flat"
		switch {
		case priced && serial:
			label = "priced-serial"
		case priced:
			label = "priced"
		}
		pprof.Do(context.Background(), pprof.Labels("run", label), func(context.Context) {
			el, st = timeClearing(b, reg, events, func(cfg *clearing.Config) func(string) *nats.Conn {
				if priced {
					cfg.Feed, cfg.FeedVersion = feed, "city"
				}
				if serial {
					clearing.WithSerialCommits(cfg)
				}
				return func(url string) *nats.Conn { return adminConn(b, url) }
			})
		})
		return el, st
	}
	var flat, priced, serial, journeys, flatCPU, pricedCPU []float64
	afterRun = func(cl *clearing.Clearing) {
		if fa, err := cl.AuditFares(); err == nil && fa != nil {
			if fa.Count != 0 {
				b.Fatalf("live pricing disagrees with the independent repricing: %+v", fa.Mismatches)
			}
			journeys = append(journeys, float64(fa.Journeys))
		}
	}
	defer func() { afterRun = nil }()
	for b.Loop() {
		el, _ := run(false, false)
		flat = append(flat, float64(perRun)/el.Seconds())
		flatCPU = append(flatCPU, lastRunCPU/float64(perRun)*1e6)
		el, st := run(true, false)
		pricedCPU = append(pricedCPU, lastRunCPU/float64(perRun)*1e6)
		if st.Priced != uint64(perRun) || st.Unpriced != 0 {
			b.Fatalf("priced %d, unpriced %d of %d", st.Priced, st.Unpriced, perRun)
		}
		priced = append(priced, float64(perRun)/el.Seconds())
		// The same without the commit pipeline: each batch committed
		// before the next is prepared.
		el, _ = run(true, true)
		serial = append(serial, float64(perRun)/el.Seconds())
	}
	f, p := median(flat), median(priced)
	b.ReportMetric(f, "flat-events/s")
	b.ReportMetric(p, "priced-events/s")
	b.ReportMetric(median(serial), "priced-serial-commits-events/s")
	// CPU per event of the whole process (clearing, NATS, Badger): the
	// runs are CPU-bound when events/s × CPU/event nears the core count.
	b.ReportMetric(median(flatCPU), "flat-cpu-µs/event")
	b.ReportMetric(median(pricedCPU), "priced-cpu-µs/event")
	// The cost of each pair, run back to back, then their median: the
	// machine's other tenants drift over seconds, a pair shares their mood.
	costs := make([]float64, len(flat))
	for i := range flat {
		costs[i] = 100 * (1 - priced[i]/flat[i])
	}
	b.ReportMetric(median(costs), "cost-%")
	b.ReportMetric(100*(1-p/f), "cost-of-medians-%")
	// Journeys priced per second: the priced runs' journeys at their rate.
	b.ReportMetric(median(journeys)*p/float64(perRun), "journeys/s")
}

// BenchmarkPricingCostRolling measures what rolling-week caps cost live
// pricing: the same events as BenchmarkPricingCost priced from the city
// feed (daily and calendar-week caps) and from the same feed with its
// weekly caps made rolling weeks (cap_period 2: each tap also looks for
// the rider's days either side, up to 8 fare days), alternating the two
// in each iteration; the cost is the median of the pairs'.
func BenchmarkPricingCostRolling(b *testing.B) {
	reg, events := cityEvents(b, pricingEvents)
	calendar, err := gtfs.LoadPath("journeys/testdata/city")
	if err != nil {
		b.Fatal(err)
	}
	dir := filepath.Join(b.TempDir(), "rolling")
	if err := os.CopyFS(dir, os.DirFS("journeys/testdata/city")); err != nil {
		b.Fatal(err)
	}
	caps, err := os.ReadFile(filepath.Join(dir, "fare_caps.txt"))
	if err != nil {
		b.Fatal(err)
	}
	caps = bytes.ReplaceAll(caps, []byte(",,1,"), []byte(",,2,"))
	if err := os.WriteFile(filepath.Join(dir, "fare_caps.txt"), caps, 0o644); err != nil {
		b.Fatal(err)
	}
	rolling, err := gtfs.LoadPath(dir)
	if err != nil {
		b.Fatal(err)
	}
	if !rolling.HasCap(fares.CapRollingWeek) || rolling.HasCap(fares.CapCalendarWeek) {
		b.Fatal("the rolling feed's weekly caps are not all rolling")
	}
	afterRun = func(cl *clearing.Clearing) {
		if fa, err := cl.AuditFares(); err != nil || fa == nil || fa.Count != 0 {
			b.Fatalf("live pricing disagrees with the independent repricing: %+v, %v", fa, err)
		}
	}
	defer func() { afterRun = nil }()
	run := func(feed *fares.Feed) float64 {
		label := "calendar"
		if feed == rolling {
			label = "rolling"
		}
		var el time.Duration
		var st clearing.Stats
		// -cpuprofile tells the runs apart by the label "run" (see
		// BenchmarkPricingCost).
		pprof.Do(context.Background(), pprof.Labels("run", label), func(context.Context) {
			el, st = timeClearing(b, reg, events, func(cfg *clearing.Config) func(string) *nats.Conn {
				cfg.Feed, cfg.FeedVersion = feed, "city"
				return func(url string) *nats.Conn { return adminConn(b, url) }
			})
		})
		if st.Priced != uint64(len(events)) {
			b.Fatalf("priced %d of %d", st.Priced, len(events))
		}
		return float64(len(events)) / el.Seconds()
	}
	var cal, rol, costs []float64
	for b.Loop() {
		c, r := run(calendar), run(rolling)
		cal, rol = append(cal, c), append(rol, r)
		costs = append(costs, 100*(1-r/c))
	}
	b.ReportMetric(median(cal), "calendar-events/s")
	b.ReportMetric(median(rol), "rolling-events/s")
	b.ReportMetric(median(costs), "rolling-cost-%")
}
