package clearing_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/fare"
	"github.com/faregate/faregate/ledger"
)

// verifierSeed writes a fresh NATS user seed for a verifier and returns
// the file and its public key.
func verifierSeed(t testing.TB) (path, public string) {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := kp.Seed()
	public, _ = kp.PublicKey()
	path = filepath.Join(t.TempDir(), "verifier.nk")
	if err := os.WriteFile(path, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, public
}

// runningVerifier is a verifier running in this process.
type runningVerifier struct {
	*clearing.Verifier
	cancel context.CancelFunc
	done   chan error
}

func startVerifier(t testing.TB, url, seed string, led ledger.Ledger, p int) *runningVerifier {
	t.Helper()
	v, err := clearing.OpenVerifier(context.Background(), clearing.VerifierConfig{NATSURL: url, NATSSeedFile: seed, Ledger: led, Partition: p, Logger: quietLogger()})
	if err != nil {
		t.Fatalf("open verifier %d: %v", p, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningVerifier{Verifier: v, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- v.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *runningVerifier) stop(t testing.TB) {
	if r.cancel == nil {
		return
	}
	r.cancel()
	if err := <-r.done; err != nil {
		t.Errorf("verifier run: %v", err)
	}
	r.cancel = nil
	r.Close()
}

// TestVerifierPartitions runs clearing with three verifier partitions: real
// terminals tap through the partitioned event stream, one verifier per
// partition, a twin joins partition 1 and partition 0's verifier is
// stopped mid-traffic and replaced. Every tap is applied exactly once and
// confirmed, both partitions carried events, a forged event is quarantined
// by its partition's verifier, and each party is refused what is not its
// own part.
func TestVerifierPartitions(t *testing.T) {
	dir := t.TempDir()
	reg, keys := testRegistry(8)
	led := openLedger(t, filepath.Join(dir, "chain"))
	t.Cleanup(func() { led.Close() })
	seedA, pubA := verifierSeed(t)
	seedB, pubB := verifierSeed(t)
	cfg := clearing.Config{DataDir: filepath.Join(dir, "clearing"), Registry: reg, Ledger: led, Period: time.Hour,
		VerifierPartitions: 3, VerifierKeys: []clearing.VerifierKey{{Partition: 0, Key: pubA}, {Partition: 1, Key: pubB}, {Partition: 2, Key: pubB}}}
	cl := startClearing(t, cfg)
	t.Cleanup(func() { cl.stop(t) })
	url := cl.NATSURL()

	if _, err := clearing.OpenVerifier(context.Background(), clearing.VerifierConfig{NATSURL: url, NATSSeedFile: seedA, Ledger: led, Partition: 3, Logger: quietLogger()}); !errors.Is(err, clearing.ErrNotAdmitted) || !strings.Contains(err.Error(), "--verifier-partitions 4 or more") {
		t.Fatalf("verifier of partition 3 of 3: %v, want ErrNotAdmitted saying clearing needs 4 partitions for it", err)
	}
	if _, err := clearing.OpenVerifier(context.Background(), clearing.VerifierConfig{NATSURL: url, NATSSeedFile: seedA, Ledger: led, Partition: 1, Logger: quietLogger()}); !errors.Is(err, clearing.ErrNotAdmitted) || !strings.Contains(err.Error(), "--verifier-key 1="+pubA) || !strings.Contains(err.Error(), "faregate nats config --verifier-partitions 2 or more --verifier-key 1="+pubA) {
		t.Fatalf("partition 0's verifier on partition 1: %v, want ErrNotAdmitted naming the key that would admit it", err)
	}
	v0 := startVerifier(t, url, seedA, led, 0)
	v1 := startVerifier(t, url, seedB, led, 1)
	v2 := startVerifier(t, url, seedB, led, 2)

	var terms []*runningTerminal
	for _, rt := range reg.Terminals {
		term := startTerminal(t, dir, url, reg, keys, rt.ID)
		t.Cleanup(func() { term.stop(t) })
		terms = append(terms, term)
	}
	taps := startTapping(t, terms, 5*time.Millisecond)
	waitFor(t, "taps applied", 30*time.Second, func() bool { return cl.Stats().Applied >= 200 })
	v1twin := startVerifier(t, url, seedB, led, 1) // a twin shares partition 1
	v0.stop(t)                                     // partition 0 loses its verifier mid-traffic...
	time.Sleep(300 * time.Millisecond)
	v0b := startVerifier(t, url, seedA, led, 0) // ...and gets another
	waitFor(t, "more taps applied", 30*time.Second, func() bool { return cl.Stats().Applied >= 600 })
	taps.stop()
	for _, term := range terms {
		waitFor(t, "terminal "+term.ID()+" confirmed", 30*time.Second, func() bool { return term.Pending() == 0 })
	}
	var sum uint64
	for _, term := range terms {
		sum += term.LastSequence()
	}
	st := cl.Stats()
	if st.Applied != sum || sum != taps.count() {
		t.Fatalf("applied %d, terminals' sequences %d, taps %d: want all equal (exactly once)", st.Applied, sum, taps.count())
	}
	// What the stopped verifier had fetched but not acked goes to its
	// replacement after the consumer's ack wait: wait for every partition's
	// consumer to be drained.
	admin := adminConn(t, url)
	defer admin.Close()
	ajs, _ := jetstream.New(admin)
	waitFor(t, "every partition's consumer drained", 30*time.Second, func() bool {
		for _, pv := range cl.VerifierPartitions(context.Background()) {
			if pv.Error != "" || pv.Pending != 0 || pv.AckPending != 0 {
				return false
			}
		}
		return true
	})
	// What the dashboard shows of them: each drained, delivered events,
	// and its verifiers waiting for more; the page in Chromium too (where
	// the waiting fetchers are only a number: a loaded machine may catch a
	// verifier between two fetches).
	pvs := cl.VerifierPartitions(context.Background())
	for _, pv := range pvs {
		if pv.Delivered == 0 || pv.Consumer != clearing.VerifierConsumer(pv.Partition) {
			t.Fatalf("partitions as the dashboard shows them: %+v", pvs)
		}
	}
	waitFor(t, "a verifier waiting on every partition", 30*time.Second, func() bool {
		for _, pv := range cl.VerifierPartitions(context.Background()) {
			if pv.Fetchers == 0 {
				return false
			}
		}
		return true
	})
	srv, token := auditedAPI(t, cl.Clearing, prometheus.NewRegistry())
	dom := dashboardDOM(t, findChromium(t), srv.URL, token, filepath.Join(t.ArtifactDir(), "dashboard-partitions.png"))
	for p := range 3 {
		row := fmt.Sprintf(`data-partition="%d"><td class="num">%d</td><td class="mono">verify-%d</td><td class="num">0</td><td class="num">0</td><td class="num">\d+</td><td class="num">[1-9]\d*</td>`, p, p, p)
		if !regexp.MustCompile(row).MatchString(dom) {
			t.Errorf("the dashboard does not show partition %d drained with its verifiers waiting (%s):\n%s", p, row, dom)
		}
	}
	if !strings.Contains(dom, `<section id="partitions-section">`) {
		t.Error("the partitions section is hidden")
	}
	fwd := []uint64{v0.Stats().Forwarded + v0b.Stats().Forwarded, v1.Stats().Forwarded + v1twin.Stats().Forwarded, v2.Stats().Forwarded}
	if fwd[0] == 0 || fwd[1] == 0 || fwd[2] == 0 || fwd[0]+fwd[1]+fwd[2] < sum {
		t.Fatalf("forwarded per partition %v for %d taps: every partition must carry events, and every tap go through one at least once", fwd, sum)
	}
	t.Logf("%d taps of %d terminals applied once; forwarded per partition %v (%d duplicates dropped by clearing)", sum, len(terms), fwd, st.Duplicates)

	// A forged event on t1's own subject: its partition's verifier
	// quarantines it, clearing never sees it.
	quarantined := func() uint64 {
		return v0b.Stats().Quarantined + v1.Stats().Quarantined + v1twin.Stats().Quarantined + v2.Stats().Quarantined
	}
	q0 := quarantined()
	forged := fare.Event{ID: fare.NewEventID(time.Now()), Terminal: "t1", Operator: "metro", Stop: "stop-t1", Gate: "g1", Direction: fare.Validate,
		Media: fare.Card, MediaToken: "forged", DeviceTime: time.Now(), Decision: fare.Accepted, Sequence: terms[0].LastSequence() + 1}
	_, other, _ := ed25519.GenerateKey(nil)
	raw, err := fare.Sign(&forged, other)
	if err != nil {
		t.Fatal(err)
	}
	nc1 := terminalConn(t, url, keys["t1"], "t1")
	defer nc1.Close()
	publishEvent(t, nc1, fare.EventSubject("metro", "t1"), raw)
	waitFor(t, "the forgery quarantined by a verifier", 10*time.Second, func() bool {
		return quarantined() > q0
	})
	time.Sleep(200 * time.Millisecond)
	if got := cl.Stats().Applied; got != sum {
		t.Fatalf("applied %d after the forgery, want %d", got, sum)
	}

	// Each party may do only its own part.
	termErrs := make(chan error, 8)
	ncT := terminalConn(t, url, keys["t2"], "t2", nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { termErrs <- err }))
	defer ncT.Close()
	checkPermissions(t, ncT, termErrs, []permCase{
		{name: "terminal forwards an event as verified", pub: clearing.VerifiedSubject(clearing.PartitionOf("bus", "t2", 3), "bus", "t2"), denied: true},
		{name: "terminal fetches from a verify consumer", pub: "$JS.API.CONSUMER.MSG.NEXT." + fare.EventStream + ".verify-0", denied: true},
	})
	verErrs := make(chan error, 8)
	kp, _ := nkeys.FromSeed(mustRead(t, seedA))
	pub, _ := kp.PublicKey()
	ncV, err := nats.Connect(url, nats.Nkey(pub, kp.Sign), nats.CustomInboxPrefix(clearing.VerifierInbox(pub)),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { verErrs <- err }))
	if err != nil {
		t.Fatalf("connect as a verifier: %v", err)
	}
	defer ncV.Close()
	// The verifier of partition 0 (seedA) may speak for partition 0 only.
	mine, theirs := termOfPartition(t, reg, 3, 0, true), termOfPartition(t, reg, 3, 0, false)
	otherP := clearing.PartitionOf(theirs.Operator, theirs.ID, 3)
	checkPermissions(t, ncV, verErrs, []permCase{
		{name: "verifier forwards on its partition", pub: clearing.VerifiedSubject(0, mine.Operator, mine.ID)},
		{name: "verifier forwards on another partition", pub: clearing.VerifiedSubject(otherP, theirs.Operator, theirs.ID), denied: true},
		{name: "verifier fetches another partition's consumer", pub: "$JS.API.CONSUMER.MSG.NEXT." + fare.EventStream + "." + clearing.VerifierConsumer(otherP), denied: true},
		{name: "verifier acks on another partition's consumer", pub: "$JS.ACK." + fare.EventStream + "." + clearing.VerifierConsumer(otherP) + ".1.1.1.1.1", denied: true},
		{name: "verifier reads another partition's consumer", pub: "$JS.API.CONSUMER.INFO." + fare.EventStream + "." + clearing.VerifierConsumer(otherP), denied: true},
		{name: "verifier forges a confirmation", pub: fare.AppliedSubject("t2"), denied: true},
		{name: "verifier fetches clearing's own consumer", pub: "$JS.API.CONSUMER.MSG.NEXT." + clearing.VerifiedStream + "." + clearing.EventConsumer, denied: true},
		{name: "verifier publishes as a terminal", pub: fare.EventSubject("bus", "t2"), denied: true},
		{name: "verifier writes the deny list", pub: "$KV." + fare.DenyBucket + ".x", denied: true},
		{name: "verifier deletes a consumer", pub: "$JS.API.CONSUMER.DELETE." + fare.EventStream + ".verify-0", denied: true},
		{name: "verifier quarantines on clearing's own subject", pub: fare.QuarantineSubject, denied: true},
		{name: "verifier quarantines on another partition's subject", pub: clearing.VerifierQuarantineSubject(otherP), denied: true},
		{name: "verifier reads terminals' confirmations", sub: fare.AppliedSubject("t2"), denied: true},
		{name: "verifier reads another verifier's deliveries", sub: clearing.VerifierInbox(pubB) + ".>", denied: true},
		{name: "verifier reads every verifier's deliveries", sub: "_VERIFIER_INBOX.>", denied: true},
	})
	if got := cl.Stats().Applied; got != sum {
		t.Fatalf("applied %d after the probes, want %d (the verifier's probe on %s was junk and must not apply)", got, sum, clearing.VerifiedSubject(0, mine.Operator, mine.ID))
	}
	// The reply subjects of the requests a verifier may make: nats-server
	// sends JetStream's answer there without checking the verifier's
	// permissions. In clearing's account an outside review had those
	// answers delete another partition's consumer, the deny-list bucket
	// and clearing's own consumer, and frame another partition's terminal
	// as a junk flooder; in the verifier's own account they reach nothing.
	junk := cl.Stats().QuarantineByWhy
	next := clearing.VerifierAPIPrefix + ".CONSUMER.MSG.NEXT." + fare.EventStream + "." + clearing.VerifierConsumer(0)
	info := clearing.VerifierAPIPrefix + ".CONSUMER.INFO." + fare.EventStream + "." + clearing.VerifierConsumer(0)
	for _, reply := range []string{
		"$JS.API.CONSUMER.DELETE." + fare.EventStream + "." + clearing.VerifierConsumer(otherP),
		"$JS.API.CONSUMER.DELETE." + clearing.VerifiedStream + "." + clearing.EventConsumer,
		"$JS.API.STREAM.DELETE.KV_" + fare.DenyBucket,
		"$JS.API.STREAM.PURGE." + fare.QuarantineStream,
		"$JS.API.STREAM.DELETE." + fare.EventStream,
		fare.EventSubject(theirs.Operator, theirs.ID),
		clearing.VerifiedSubject(otherP, theirs.Operator, theirs.ID),
		"$JS.ACK." + fare.EventStream + "." + clearing.VerifierConsumer(otherP) + ".1.1.1.1.1",
	} {
		for range 20 {
			if err := ncV.PublishRequest(next, reply, []byte(`{"batch":1,"no_wait":true}`)); err != nil {
				t.Fatal(err)
			}
			if err := ncV.PublishRequest(info, reply, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := ncV.Flush(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	adminV := adminConn(t, url)
	defer adminV.Close()
	jsA, _ := jetstream.New(adminV)
	for _, c := range []struct{ stream, consumer string }{{fare.EventStream, clearing.VerifierConsumer(otherP)}, {clearing.VerifiedStream, clearing.EventConsumer}} {
		if _, err := jsA.Consumer(context.Background(), c.stream, c.consumer); err != nil {
			t.Errorf("after a verifier's requests with chosen reply subjects: consumer %s of %s: %v", c.consumer, c.stream, err)
		}
	}
	for _, st := range []string{"KV_" + fare.DenyBucket, fare.EventStream, fare.QuarantineStream} {
		if _, err := jsA.Stream(context.Background(), st); err != nil {
			t.Errorf("after a verifier's requests with chosen reply subjects: stream %s: %v", st, err)
		}
	}
	if after := cl.Stats().QuarantineByWhy; fmt.Sprint(after) != fmt.Sprint(junk) {
		t.Errorf("a verifier's answers sent to another partition's subjects were quarantined: %v, was %v", after, junk)
	}
	if natsRefuses(t, url, keys[theirs.ID], theirs.ID) {
		t.Errorf("terminal %s, of another partition, barred after a verifier aimed JetStream's answers at its subject", theirs.ID)
	}
	// Junk reports a verifier writes itself, naming a terminal of another
	// partition in the header: an outside review had any gate barred so
	// with 1,100 of them. Counted only against the verifier's own
	// partition's terminals.
	for i := range 1100 {
		m := nats.NewMsg(clearing.VerifierQuarantineSubject(0))
		m.Data = []byte(fmt.Sprintf("framed-%d", i))
		m.Header.Set(fare.HeaderReason, clearing.ReasonMalformed)
		m.Header.Set("Faregate-Subject", fmt.Sprintf("faregate.events.%d.%s.%s", otherP, theirs.Operator, theirs.ID))
		if err := ncV.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	if err := ncV.Flush(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	if natsRefuses(t, url, keys[theirs.ID], theirs.ID) {
		t.Errorf("terminal %s, of partition %d, barred by partition 0's verifier's forged junk reports", theirs.ID, otherP)
	}
	if got := cl.Stats().Applied; got != sum {
		t.Fatalf("applied %d after the verifier's reply-subject probes, want %d", got, sum)
	}
	// A verifier broken into forges an event of another partition's
	// terminal, next in its sequence, and forwards it as verified on its
	// own partition's subject, the only one it may use: clearing takes a
	// terminal's events only from that terminal's partition.
	var last uint64
	for _, term := range terms {
		if term.ID() == theirs.ID {
			last = term.LastSequence()
		}
	}
	forgedOther := fare.Event{ID: fare.NewEventID(time.Now()), Terminal: theirs.ID, Operator: theirs.Operator, Stop: theirs.Stop, Gate: "g1",
		Direction: fare.Validate, Media: fare.Card, MediaToken: "forged-by-a-verifier", DeviceTime: time.Now(), Decision: fare.Accepted, Sequence: last + 1}
	rawOther, err := fare.Sign(&forgedOther, other)
	if err != nil {
		t.Fatal(err)
	}
	mis := cl.Stats().QuarantineByWhy[clearing.ReasonSubjectMismatch]
	jsV, _ := jetstream.New(ncV)
	if _, err := jsV.Publish(context.Background(), clearing.VerifiedSubject(0, theirs.Operator, theirs.ID), rawOther); err != nil {
		t.Fatalf("the verifier's forwarding of the forgery on its own partition: %v", err)
	}
	waitFor(t, "clearing to refuse the forgery from the wrong partition", 10*time.Second, func() bool {
		return cl.Stats().QuarantineByWhy[clearing.ReasonSubjectMismatch] > mis
	})
	if got := cl.Stats().Applied; got != sum {
		t.Fatalf("applied %d after a verifier of partition 0 forwarded a forgery of %s (partition %d), want %d", got, theirs.ID, otherP, sum)
	}
	// The same forgery claiming an operator that hashes into partition 0:
	// judged by the registry's operator of the terminal, it is still from
	// the wrong partition, junk; it used to be rejected as an operator
	// mismatch, for good, burning the terminal's sequence.
	claimed := ""
	for i := 0; claimed == ""; i++ {
		if op := fmt.Sprintf("op%d", i); clearing.PartitionOf(op, theirs.ID, 3) == 0 {
			claimed = op
		}
	}
	forgedOther.ID, forgedOther.Operator = fare.NewEventID(time.Now()), claimed
	if rawOther, err = fare.Sign(&forgedOther, other); err != nil {
		t.Fatal(err)
	}
	mis, rej := cl.Stats().QuarantineByWhy[clearing.ReasonSubjectMismatch], cl.Stats().Rejected
	if _, err := jsV.Publish(context.Background(), clearing.VerifiedSubject(0, claimed, theirs.ID), rawOther); err != nil {
		t.Fatalf("the verifier's forwarding of the forgery claiming %s: %v", claimed, err)
	}
	waitFor(t, "clearing to refuse the forgery claiming another operator", 10*time.Second, func() bool {
		return cl.Stats().QuarantineByWhy[clearing.ReasonSubjectMismatch] > mis
	})
	if st := cl.Stats(); st.Rejected != rej || st.Applied != sum {
		t.Fatalf("after the forgery claiming operator %s: rejected %d (was %d), applied %d: want nothing burnt, nothing applied", claimed, st.Rejected, rej, st.Applied)
	}
	// On its own partition a verifier broken into can forward a forgery
	// (`ledger audit` finds it), but not burn a sequence with one: an event
	// the registry would reject for good (here a wrong stop) has its
	// signature checked by clearing itself.
	var mineLast uint64
	for _, term := range terms {
		if term.ID() == mine.ID {
			mineLast = term.LastSequence()
		}
	}
	// The same for the other refusal for good: a face its gate cannot hold.
	for _, burn := range []fare.Event{
		{Stop: "elsewhere", Media: fare.Card, MediaToken: "burn", DeviceTime: time.Now()},
		{Stop: mine.Stop, Media: fare.Face, MediaToken: "a-face-never-sent", DeviceTime: time.Now(),
			Face: &fare.FaceEvidence{Mode: fare.FaceIdentify, Subject: "a-face-never-sent", Distance: 0.2, Margin: 0.3, Frames: 1, Model: "m", Policy: "p"}},
	} {
		burn.ID, burn.Terminal, burn.Operator, burn.Gate = fare.NewEventID(time.Now()), mine.ID, mine.Operator, "g1"
		burn.Direction, burn.Decision, burn.Sequence = fare.Validate, fare.Accepted, mineLast+1
		rawBurn, err := fare.Sign(&burn, other)
		if err != nil {
			t.Fatal(err)
		}
		bad := cl.Stats().QuarantineByWhy[clearing.ReasonBadSignature]
		if _, err := jsV.Publish(context.Background(), clearing.VerifiedSubject(0, mine.Operator, mine.ID), rawBurn); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "clearing to find the forged rejection's signature bad", 10*time.Second, func() bool {
			return cl.Stats().QuarantineByWhy[clearing.ReasonBadSignature] > bad
		})
		if st := cl.Stats(); st.Rejected != rej {
			t.Fatalf("a forged event refused for good (%s, %s, %s) burnt a sequence: rejected %d, was %d", burn.Stop, burn.Media, burn.DeviceTime, st.Rejected, rej)
		}
	}
	// A forgery it forwards under a sequence the terminal has not used yet
	// is applied (ledger audit finds it); when the terminal's genuine event
	// of that sequence comes, clearing checks its signature itself and
	// names the conflict instead of passing the genuine tap off as a
	// replay (it is kept in the quarantine stream, and logged).
	taken := fare.Event{ID: fare.NewEventID(time.Now()), Terminal: mine.ID, Operator: mine.Operator, Stop: mine.Stop, Gate: "g1",
		Direction: fare.Validate, Media: fare.Card, MediaToken: "forged-ahead", DeviceTime: time.Now(), Decision: fare.Accepted, Sequence: mineLast + 100}
	rawTaken, err := fare.Sign(&taken, other)
	if err != nil {
		t.Fatal(err)
	}
	genuine := taken
	genuine.ID, genuine.MediaToken = fare.NewEventID(time.Now()), "card-genuine"
	rawGenuine, err := fare.Sign(&genuine, keys[mine.ID])
	if err != nil {
		t.Fatal(err)
	}
	applied, conflicts := cl.Stats().Applied, cl.Stats().QuarantineByWhy[clearing.ReasonSequenceConflict]
	if _, err := jsV.Publish(context.Background(), clearing.VerifiedSubject(0, mine.Operator, mine.ID), rawTaken); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the forgery applied", 10*time.Second, func() bool { return cl.Stats().Applied > applied })
	if _, err := jsV.Publish(context.Background(), clearing.VerifiedSubject(0, mine.Operator, mine.ID), rawGenuine); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the genuine event named a sequence conflict", 10*time.Second, func() bool {
		return cl.Stats().QuarantineByWhy[clearing.ReasonSequenceConflict] > conflicts
	})
	// An event naming an applied event's id is refused for good only once
	// clearing found its terminal signed it: a verifier's forgery of one
	// burns no sequence, the terminal's own uses up its sequence.
	rej = cl.Stats().Rejected
	bad := cl.Stats().QuarantineByWhy[clearing.ReasonBadSignature]
	idTaken := cl.Stats().QuarantineByWhy[clearing.ReasonEventIDTaken]
	dup := taken
	dup.Sequence, dup.MediaToken = mineLast+101, "forged-dup"
	rawDup, err := fare.Sign(&dup, other)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jsV.Publish(context.Background(), clearing.VerifiedSubject(0, mine.Operator, mine.ID), rawDup); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the forged id-taken event found junk", 10*time.Second, func() bool {
		return cl.Stats().QuarantineByWhy[clearing.ReasonBadSignature] > bad
	})
	if st := cl.Stats(); st.Rejected != rej {
		t.Fatalf("a verifier's forgery with a taken id burnt a sequence: rejected %d, was %d", st.Rejected, rej)
	}
	dup.Sequence, dup.MediaToken = mineLast+101, "own-dup"
	rawOwnDup, err := fare.Sign(&dup, keys[mine.ID])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jsV.Publish(context.Background(), clearing.VerifiedSubject(0, mine.Operator, mine.ID), rawOwnDup); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the terminal's own id-taken event rejected for good", 10*time.Second, func() bool {
		return cl.Stats().Rejected == rej+1 && cl.Stats().QuarantineByWhy[clearing.ReasonEventIDTaken] == idTaken+1
	})

	// A second store on the same NATS is refused before it changes
	// anything, with the same partitioning or another.
	for _, parts := range []int{3, 0, 2} {
		second := cfg
		second.DataDir, second.NATSURL, second.NATSSeedFile = filepath.Join(dir, fmt.Sprintf("second-%d", parts)), url, clearingSeedFile(t)
		second.ConfirmKey, second.Logger, second.VerifierPartitions = testConfirmKey, quietLogger(), parts
		second.VerifierKeys = nil
		for _, k := range cfg.VerifierKeys {
			if k.Partition < parts {
				second.VerifierKeys = append(second.VerifierKeys, k)
			}
		}
		if _, err := clearing.Open(context.Background(), second); !errors.Is(err, clearing.ErrConsumerOwned) {
			t.Fatalf("a second store with %d partitions: %v, want ErrConsumerOwned", parts, err)
		}
	}
	for p := range 3 {
		if _, err := ajs.Consumer(context.Background(), fare.EventStream, clearing.VerifierConsumer(p)); err != nil {
			t.Fatalf("partition %d's consumer after the refused stores: %v", p, err)
		}
	}
	// A partition's consumer gone (removed with an admin's credentials):
	// no verifier can fetch its events, and clearing is not ready, naming
	// it; it was ready while the partition's taps piled up (an outside
	// review).
	if err := ajs.DeleteConsumer(context.Background(), fare.EventStream, clearing.VerifierConsumer(2)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "clearing not ready for the gone consumer", 10*time.Second, func() bool {
		err := cl.Ready(context.Background())
		return err != nil && strings.Contains(err.Error(), "verifier partition 2: its consumer verify-2 cannot be found")
	})
}

// TestVerifierPartitionsRepartition: clearing refuses to change the
// partitioning of an event stream that still holds events, and drains it
// with the partitioning it has.
func TestVerifierPartitionsRepartition(t *testing.T) {
	dir := t.TempDir()
	reg, keys := testRegistry(4)
	led := openLedger(t, filepath.Join(dir, "chain"))
	t.Cleanup(func() { led.Close() })
	seed, pub := verifierSeed(t)
	natsDir := filepath.Join(dir, "clearing")
	port := freePort(t)
	cfg := clearing.Config{DataDir: natsDir, Registry: reg, Ledger: led, Period: time.Hour, NATSPort: port,
		VerifierPartitions: 2, VerifierKeys: []clearing.VerifierKey{{Partition: 0, Key: pub}, {Partition: 1, Key: pub}}}
	cl := startClearing(t, cfg)
	url := cl.NATSURL()
	// No verifier runs: events wait in the partitions' consumers.
	term := startTerminal(t, dir, url, reg, keys, "t1")
	t.Cleanup(func() { term.stop(t) })
	for i := range 5 {
		tap(t, term.Terminal, fmt.Sprintf("card-%d", i), fare.Validate)
	}
	waitFor(t, "events published", 10*time.Second, func() bool { return term.Published() >= 5 })
	// A verifier that stopped (or hangs) holding one message it fetched and
	// never acked: nobody fetches, and the partition's ack floor stays put.
	admin := adminConn(t, url)
	defer admin.Close()
	ajs, _ := jetstream.New(admin)
	held, err := ajs.Consumer(context.Background(), fare.EventStream, clearing.VerifierConsumer(clearing.PartitionOf("metro", "t1", 2)))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := held.Fetch(1, jetstream.FetchMaxWait(2*time.Second)); err != nil {
		t.Fatal(err)
	} else {
		for range got.Messages() {
		}
	}
	// /readyz says so once the events have waited a while with nobody to
	// verify them, naming the partition and what to start.
	waitFor(t, "readiness to name a partition without a verifier", 20*time.Second, func() bool {
		err := cl.Ready(context.Background())
		return err != nil && strings.Contains(err.Error(), "events waiting and no verifier fetching them") && strings.Contains(err.Error(), "faregate clearing verifier --partition")
	})
	cl.stop(t)

	cfg.VerifierPartitions, cfg.VerifierKeys = 0, nil
	cfg.NATSSeedFile = clearingSeedFile(t)
	cfg.ConfirmKey = testConfirmKey // the key the store was made with (startClearing's)
	if _, err := clearing.Open(context.Background(), cfg); !errors.Is(err, clearing.ErrPartitionsChanged) {
		t.Fatalf("open unpartitioned over a partitioned stream holding events: %v, want ErrPartitionsChanged", err)
	}
	cfg.VerifierPartitions, cfg.VerifierKeys = 2, []clearing.VerifierKey{{Partition: 0, Key: pub}, {Partition: 1, Key: pub}}
	cl = startClearing(t, cfg)
	t.Cleanup(func() { cl.stop(t) })
	startVerifier(t, cl.NATSURL(), seed, led, 0)
	startVerifier(t, cl.NATSURL(), seed, led, 1)
	waitFor(t, "the waiting events applied", 30*time.Second, func() bool { return term.Pending() == 0 })
	if got := cl.Stats().Applied; got != 5 {
		t.Fatalf("applied %d, want 5", got)
	}
	waitFor(t, "ready again with verifiers on every partition", 10*time.Second, func() bool { return cl.Ready(context.Background()) == nil })
}

// termOfPartition returns a terminal of reg that is (in) or is not in
// partition p of n.
func termOfPartition(t testing.TB, reg *clearing.Registry, n, p int, in bool) clearing.TerminalPublicKey {
	t.Helper()
	for _, rt := range reg.Terminals {
		if (clearing.PartitionOf(rt.Operator, rt.ID, n) == p) == in {
			return rt
		}
	}
	t.Fatalf("no terminal with partition %d of %d == %v", p, n, in)
	return clearing.TerminalPublicKey{}
}

func mustRead(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// brokenLedger is a ledger whose registry reads fail once broken, as an
// embedded chain's old endpoint does after clearing restarted.
type brokenLedger struct {
	ledger.Ledger
	broken atomic.Bool
	closed atomic.Bool
}

func (b *brokenLedger) TerminalChanges(ctx context.Context, from uint64) (ledger.RegistryRead, error) {
	if b.broken.Load() {
		return ledger.RegistryRead{}, errors.New("dial tcp 127.0.0.1:1: connection refused")
	}
	return b.Ledger.TerminalChanges(ctx, from)
}

func (b *brokenLedger) Close() error { b.closed.Store(true); return nil }

// TestVerifierReopensTheRegistry: a verifier whose ledger stops answering
// (clearing restarted, its chain on a new port) reopens it through Reopen
// after three failed reads and then knows a terminal registered since; its
// events are forwarded, not quarantined as from an unknown terminal.
func TestVerifierReopensTheRegistry(t *testing.T) {
	dir := t.TempDir()
	reg, keys := testRegistry(3)
	led := openLedger(t, filepath.Join(dir, "chain"))
	t.Cleanup(func() { led.Close() })
	seed, pub := verifierSeed(t)
	// t3 is not on chain yet: the registry published holds t1 and t2.
	first := *reg
	first.Terminals = reg.Terminals[:2]
	cl := startClearing(t, clearing.Config{DataDir: filepath.Join(dir, "clearing"), Registry: &first, Ledger: led, Period: time.Hour,
		VerifierPartitions: 1, VerifierKeys: []clearing.VerifierKey{{Partition: 0, Key: pub}}, RegistryPoll: 100 * time.Millisecond})
	t.Cleanup(func() { cl.stop(t) })
	old := &brokenLedger{Ledger: led}
	var reopened atomic.Int32
	v, err := clearing.OpenVerifier(context.Background(), clearing.VerifierConfig{NATSURL: cl.NATSURL(), NATSSeedFile: seed, Ledger: old, Partition: 0,
		RegistryPoll: 50 * time.Millisecond, Logger: quietLogger(),
		Reopen: func(context.Context) (ledger.Ledger, error) { reopened.Add(1); return &brokenLedger{Ledger: led}, nil }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- v.Run(ctx) }()
	defer func() { cancel(); <-done; v.Close() }()

	old.broken.Store(true)
	publish(t, clearing.Config{Registry: reg, Ledger: led}) // t3 registered now
	waitFor(t, "the verifier to reopen its ledger", 10*time.Second, func() bool { return reopened.Load() > 0 })
	if old.closed.Load() {
		t.Fatal("the verifier closed the ledger it was given")
	}
	waitFor(t, "clearing to know t3", 10*time.Second, func() bool { _, ok := cl.Terminals().Lookup("t3"); return ok })
	term := startTerminal(t, dir, cl.NATSURL(), reg, keys, "t3")
	t.Cleanup(func() { term.stop(t) })
	tap(t, term.Terminal, "card-1", fare.Validate)
	waitFor(t, "t3's tap confirmed through the verifier", 15*time.Second, func() bool { return term.Pending() == 0 })
	if st := v.Stats(); st.Forwarded == 0 || st.QuarantineByWhy[clearing.ReasonUnknownTerminal] != 0 {
		t.Fatalf("verifier stats %+v: want t3's event forwarded, none quarantined as unknown", st)
	}
}

// TestParseVerifierKey: --verifier-key takes P=U..., and names what is
// wrong with anything else.
func TestParseVerifierKey(t *testing.T) {
	_, pub := verifierSeed(t)
	for _, c := range []struct {
		in   string
		want clearing.VerifierKey
		err  string
	}{
		{in: "0=" + pub, want: clearing.VerifierKey{Partition: 0, Key: pub}},
		{in: "63=" + pub, want: clearing.VerifierKey{Partition: 63, Key: pub}},
		{in: pub, err: "names no partition"},
		{in: "64=" + pub, err: "not a number from 0 to 63"},
		{in: "-1=" + pub, err: "not a number from 0 to 63"},
		{in: "x=" + pub, err: "not a number"},
		{in: "=" + pub, err: "not a number"},
		{in: "0=", err: "not a NATS user public key"},
		{in: "0=" + "S" + pub[1:], err: "a seed, not shown"}, // looks like one: not shown
		{in: "0=" + pub + "=", err: "not a NATS user public key"},
	} {
		got, err := clearing.ParseVerifierKey(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("ParseVerifierKey(%q) = %v, %v; want an error saying %q", c.in, got, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want || got.String() != c.in {
			t.Errorf("ParseVerifierKey(%q) = %v (%s), %v; want %v", c.in, got, got, err, c.want)
		}
	}
}

// TestParseVerifierKeyHidesASeed: a verifier's seed pasted where its
// public key goes is refused without being shown.
func TestParseVerifierKeyHidesASeed(t *testing.T) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := kp.Seed()
	// The seed where the partition goes, too: each refusal says so once
	// and shows no part of it.
	for _, in := range []string{"0=" + string(seed), string(seed), string(seed) + "=UAB", "1= " + string(seed)} {
		_, err := clearing.ParseVerifierKey(in)
		if err == nil || strings.Contains(err.Error(), string(seed[:20])) || strings.Count(err.Error(), "a seed, not shown") != 1 {
			t.Errorf("%d-byte input with a seed: %v", len(in), err)
		}
	}
}

// TestVerifierInfoFloodStaysInItsPartition: a verifier's consumer
// information requests are answered by clearing from a copy, a few a
// second, not lent from JetStream's API, whose one queue of information
// requests for the whole server an outside re-check filled from one
// partition: clearing's own requests were dropped with it (it was not
// ready, and a gate of another partition got no deny list). Here, while a
// verifier floods them for 3 s, clearing stays ready and a new gate of
// the other partition gets its lists; the verifier's own request is
// answered after.
func TestVerifierInfoFloodStaysInItsPartition(t *testing.T) {
	dir := t.TempDir()
	reg, keys := testRegistry(4)
	led := openLedger(t, filepath.Join(dir, "chain"))
	t.Cleanup(func() { led.Close() })
	seed, pub := verifierSeed(t)
	cl := startClearing(t, clearing.Config{DataDir: filepath.Join(dir, "clearing"), Registry: reg, Ledger: led, Period: time.Hour,
		VerifierPartitions: 2, VerifierKeys: []clearing.VerifierKey{{Partition: 0, Key: pub}}})
	t.Cleanup(func() { cl.stop(t) })
	url := cl.NATSURL()
	kp, _ := nkeys.FromSeed(mustRead(t, seed))
	nc, err := nats.Connect(url, nats.Nkey(pub, kp.Sign), nats.CustomInboxPrefix(clearing.VerifierInbox(pub)))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	info := clearing.VerifierAPIPrefix + ".CONSUMER.INFO." + fare.EventStream + "." + clearing.VerifierConsumer(0)
	stop := make(chan struct{})
	flooded := make(chan int)
	go func() {
		n := 0
		defer func() { flooded <- n }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			for range 1000 {
				if nc.PublishRequest(info, clearing.VerifierInbox(pub)+".flood."+strconv.Itoa(n%8), nil) != nil {
					return
				}
				n++
			}
			_ = nc.Flush()
		}
	}()
	// While it floods: clearing stays ready, and a new gate of the other
	// partition gets its lists.
	var notReady []error
	other := termOfPartition(t, reg, 2, 0, false)
	term := startTerminal(t, dir, url, reg, keys, other.ID)
	defer term.stop(t)
	for range 30 {
		if err := cl.Ready(context.Background()); err != nil {
			notReady = append(notReady, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	synced := false
	select {
	case <-term.ListsSynced():
		synced = true
	case <-time.After(5 * time.Second):
	}
	close(stop)
	n := <-flooded
	t.Logf("%d consumer information requests in about 3 s", n)
	if len(notReady) > 0 || !synced {
		t.Fatalf("while a verifier flooded consumer information requests: not ready %d of 30 times (%v), gate %s of partition 1 synced its lists %v", len(notReady), notReady[:min(len(notReady), 2)], other.ID, synced)
	}
	time.Sleep(time.Second) // past the flood's second: the verifier is answered again
	v := startVerifier(t, url, seed, led, 0)
	v.stop(t)
}

// TestRepartitionRefusedWithVerifiedBacklog: clearing stopped behind its
// verifiers (an event verified, not applied yet, the event stream itself
// drained) refuses to start with another partitioning, naming the verified
// stream: with none nothing would read that event, with another count it
// would be quarantined as coming from the wrong partition (an outside
// review saw both). With the partitioning it has, it starts.
func TestRepartitionRefusedWithVerifiedBacklog(t *testing.T) {
	dir, url, keys, config := ownedStoreCity(t)
	cfg := config(filepath.Join(dir, "a"), 2*time.Second)
	cfg.VerifierPartitions = 2
	startClearing(t, cfg).stop(t)
	admin := adminConn(t, url)
	defer admin.Close()
	_, raw := t1Entry(t, keys, "card-backlog", 1)
	p := clearing.PartitionOf("metro", "t1", 2)
	publishEvent(t, admin, clearing.VerifiedSubject(p, "metro", "t1"), raw)
	other := 3
	for clearing.PartitionOf("metro", "t1", other) == p {
		other++
	}
	for _, n := range []int{0, other} {
		cfg.VerifierPartitions = n
		cfg.NATSPort = -1
		cl, err := clearing.Open(context.Background(), cfg)
		if err == nil {
			cl.Close()
		}
		if !errors.Is(err, clearing.ErrPartitionsChanged) || !strings.Contains(err.Error(), clearing.VerifiedStream+" holds 1 verified event(s) clearing has not applied yet (partitioned for 2 verifier partitions)") {
			t.Errorf("opened with %d partitions over a verified event not applied: %v, want ErrPartitionsChanged naming %s", n, err, clearing.VerifiedStream)
		}
	}
	cfg.VerifierPartitions = 2
	startClearing(t, cfg).stop(t)
}

// TestForwardedReplaysCountedBySendTime: a verifier that comes back after
// an outage forwards the copies a gate resent meanwhile all at once.
// Clearing counts them by when the gate sent them, which the verifier
// carries, not by when it forwarded them: 30 copies of one event sent over
// 18 s (at most 17 within any 10 s) do not bar the gate, where by the
// forwards' own time all 30 fell in one window (the final static review).
func TestForwardedReplaysCountedBySendTime(t *testing.T) {
	dir := t.TempDir()
	reg, keys := testRegistry(2)
	led := openLedger(t, filepath.Join(dir, "chain"))
	t.Cleanup(func() { led.Close() })
	seed, pub := verifierSeed(t)
	cl := startClearing(t, clearing.Config{DataDir: filepath.Join(dir, "clearing"), Registry: reg, Ledger: led, Period: time.Hour,
		VerifierPartitions: 1, VerifierKeys: []clearing.VerifierKey{{Partition: 0, Key: pub}}})
	t.Cleanup(func() { cl.stop(t) })
	rt, _ := reg.TerminalKey("t1")
	ev := fare.Event{ID: fare.NewEventID(time.Now()), Terminal: "t1", Operator: rt.Operator, Stop: rt.Stop, Gate: "g1",
		Direction: fare.Validate, Media: fare.Card, MediaToken: "card-resent", DeviceTime: time.Now(), Decision: fare.Accepted, Sequence: 1}
	raw, err := fare.Sign(&ev, keys["t1"])
	if err != nil {
		t.Fatal(err)
	}
	gate := terminalConn(t, cl.NATSURL(), keys["t1"], "t1")
	defer gate.Close()
	const copies = 30
	for i := range copies {
		m := nats.NewMsg(fare.EventSubject(rt.Operator, "t1"))
		m.Data = raw
		m.Header.Set(nats.MsgIdHdr, fmt.Sprintf("round-%d", i))
		if err := gate.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
		if err := gate.Flush(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(600 * time.Millisecond)
	}
	startVerifier(t, cl.NATSURL(), seed, led, 0)
	waitFor(t, "every copy forwarded and met", 30*time.Second, func() bool {
		s := cl.Stats()
		return s.Applied == 1 && s.Duplicates >= copies-1
	})
	if f := cl.Stats().APIFlooders["t1"]; f != 0 || natsRefuses(t, cl.NATSURL(), keys["t1"], "t1") {
		t.Fatalf("the gate barred (flagged %d times) for its resends, forwarded at once", f)
	}
}
