package clearing_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/fare"
	"github.com/faregate/faregate/terminal"
)

// TestGateListsOfflineTerminal: a gate is offline (no NATS) while clearing
// denies a card and enrols another as concession; it decides from its stored
// copy meanwhile; once it reconnects it catches up: the denied card is
// refused, the enrolled card's event carries its category, and clearing
// prices it as concession.
func TestGateListsOfflineTerminal(t *testing.T) {
	ctx := context.Background()
	fc := startFeedCity(t)
	url := fc.cl.NATSURL()
	gate := "bus-s01-g1"
	d := fc.feed.FareDay(time.Now()) + 2
	at := fc.feed.FareDayBegins(d).Add(7 * time.Hour) // 11:00 in Berlin: off-peak

	// Online once (an empty copy), then offline.
	rt := startTerminal(t, fc.dir, url, fc.reg, fc.keys, gate)
	waitFor(t, "the gate's first watch", 10*time.Second, func() bool { return rt.Terminal != nil })
	rt.stop(t)
	offline := startTerminal(t, fc.dir, "nats://127.0.0.1:1", fc.reg, fc.keys, gate)
	if err := fc.cl.Deny(ctx, fare.Card, "stolen-7", "reported stolen"); err != nil {
		t.Fatal(err)
	}
	if _, err := fc.cl.Enrol(ctx, fare.Card, "conc-2", clearing.EnrolRequest{Category: "concession", ApprovedBy: "desk",
		ValidFrom: fc.feed.FareDayBegins(d), ValidUntil: fc.feed.FareDayBegins(d + 1)}); err != nil {
		t.Fatal(err)
	}
	checkDecision(t, offline, fare.Card, "stolen-7", "accepted/card") // its copy predates the listing
	if c := offline.Category(fare.Card, "conc-2", at); c != "" {
		t.Fatalf("offline gate knows an enrolment it never read: %q", c)
	}
	offline.stop(t)

	// Back online: it reads both buckets whole.
	start := time.Now()
	rt = startTerminal(t, fc.dir, url, fc.reg, fc.keys, gate)
	defer rt.stop(t)
	waitDenyVersion(t, rt, 1, 10*time.Second)
	waitFor(t, "the enrolment at the gate", 10*time.Second, func() bool { v, n := rt.EnrolmentVersion(); return v == 1 && n == 1 })
	t.Logf("reconnected gate caught up in %s", time.Since(start).Round(time.Millisecond))
	checkDecision(t, rt, fare.Card, "stolen-7", "denied/deny-list")
	ev, err := rt.Tap(ctx, terminal.Tap{Gate: "g1", Direction: fare.Validate, Media: fare.Card, Token: "conc-2", RiderCategory: "adult", Time: at})
	if err != nil {
		t.Fatal(err)
	}
	if ev.RiderCategory != "concession" || ev.Decision != fare.Accepted {
		t.Fatalf("enrolled card's event: category %q, %s", ev.RiderCategory, ev.Decision)
	}
	ev, err = rt.Tap(ctx, terminal.Tap{Gate: "g1", Direction: fare.Validate, Media: fare.Card, Token: "other", RiderCategory: "concession", Time: at})
	if err != nil || ev.RiderCategory != "" {
		t.Fatalf("a card not enrolled: category %q (the line's claim is not used), %v", ev.RiderCategory, err)
	}
	waitFor(t, "both taps priced", 20*time.Second, func() bool { return fc.cl.Stats().Priced == 2 })
	for card, want := range map[string]fare.Amount{"conc-2": -90, "other": -180} {
		b, err := fc.cl.Store().Balance(fc.cl.RiderAccount(fare.Card, card))
		if err != nil || b.Net() != want {
			t.Errorf("%s charged %d, want %d (%v)", card, b.Net(), want, err)
		}
	}
	if by := rt.DenyRefusals(); by[terminal.DenyRefusedUntrusted]+by[terminal.DenyRefusedMalformed]+by[terminal.DenyRefusedOlder] != 0 {
		t.Errorf("genuine values refused: %v", by)
	}
	if r, d := fc.cl.GateListGuard(); r != 0 || d != 0 {
		t.Errorf("with nobody attacking, clearing repaired %d values and deleted %d consumers", r, d)
	}
}

// TestGateListAttacks, from a terminal's side: it may watch the buckets but
// not write, purge or delete them, nor read any other stream; what it can
// make the server write into a bucket (a JetStream reply aimed at a $KV
// subject) is refused by the gates and put back by clearing; a consumer it
// makes that delivers anywhere but its own inbox, or that is durable, is
// deleted by clearing; a value signed by another key, or a genuine but older
// one put back by someone with full access, changes nothing at a gate.
func TestGateListAttacks(t *testing.T) {
	ctx := context.Background()
	_, reg, keys, cl := startCity(t, 2)
	url := cl.NATSURL()
	dir := t.TempDir()
	t1 := startTerminal(t, dir, url, reg, keys, "t1")
	defer t1.stop(t)
	if err := cl.Deny(ctx, fare.Card, "stolen-A", "reported stolen"); err != nil {
		t.Fatal(err)
	}
	waitDenyVersion(t, t1, 1, 10*time.Second)
	stolen := fare.HashDeny(fare.Card, "stolen-A").String()

	admin := adminConn(t, url)
	defer admin.Close()
	ajs, _ := jetstream.New(admin)
	denyKV, err := ajs.KeyValue(ctx, fare.DenyBucket)
	if err != nil {
		t.Fatal(err)
	}
	genuine, err := denyKV.Get(ctx, stolen)
	if err != nil {
		t.Fatal(err)
	}
	// isClearings: the bucket holds clearing's own listing of stolen-A again.
	isClearings := func(listed bool) func() bool {
		return func() bool {
			e, err := denyKV.Get(ctx, stolen)
			if err != nil {
				return false
			}
			_, b, _ := fare.Unbundle(e.Value())
			ge, err := fare.VerifyGateEntry(b, []ed25519.PublicKey{cl.ConfirmationKey()})
			return err == nil && ge.Listed == listed
		}
	}

	errs := make(chan error, 64)
	nc := terminalConn(t, url, keys["t1"], "t1", nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err }))
	defer nc.Close()
	checkPermissions(t, nc, errs, []permCase{
		{name: "the deny bucket's stream info", pub: lent("$JS.API.STREAM.INFO.KV_" + fare.DenyBucket)},
		{name: "the deny bucket's stream info, not lent", pub: "$JS.API.STREAM.INFO.KV_" + fare.DenyBucket, denied: true},
		{name: "put into the deny bucket", pub: "$KV." + fare.DenyBucket + "." + stolen, denied: true},
		{name: "put into the enrolments bucket", pub: "$KV." + fare.EnrolBucket + "." + stolen, denied: true},
		{name: "purge the deny bucket", pub: "$JS.API.STREAM.PURGE.KV_" + fare.DenyBucket, denied: true},
		{name: "delete the deny bucket", pub: "$JS.API.STREAM.DELETE.KV_" + fare.DenyBucket, denied: true},
		{name: "update the deny bucket", pub: "$JS.API.STREAM.UPDATE.KV_" + fare.DenyBucket, denied: true},
		{name: "delete a value", pub: "$JS.API.STREAM.MSG.DELETE.KV_" + fare.DenyBucket, denied: true},
		{name: "get a value directly", pub: "$JS.API.DIRECT.GET.KV_" + fare.DenyBucket, denied: true},
		{name: "list the bucket's consumers", pub: "$JS.API.CONSUMER.LIST.KV_" + fare.DenyBucket, denied: true},
		{name: "the event stream's info", pub: "$JS.API.STREAM.INFO." + fare.EventStream, denied: true},
		{name: "a consumer on the event stream", pub: "$JS.API.CONSUMER.CREATE." + fare.EventStream + ".x." + fare.EventSubjects, denied: true},
		{name: "a durable consumer on the deny bucket (legacy API)", pub: "$JS.API.CONSUMER.DURABLE.CREATE.KV_" + fare.DenyBucket + ".x", denied: true},
		{name: "read the bucket's subjects", sub: "$KV.>", denied: true},
		{name: "read the advisories", sub: "$JS.EVENT.>", denied: true},
	})
	tjs, _ := jetstream.NewWithAPIPrefix(nc, fare.TerminalJSAPI)
	tkv, err := tjs.KeyValue(ctx, fare.DenyBucket)
	if err != nil {
		t.Fatalf("t1 binding to the deny bucket: %v", err)
	}
	pctx, pcancel := context.WithTimeout(ctx, time.Second)
	if _, err := tkv.Put(pctx, stolen, []byte("x")); err == nil {
		t.Error("t1 put a value")
	}
	pcancel()
	pctx, pcancel = context.WithTimeout(ctx, time.Second)
	if err := tkv.Delete(pctx, stolen); err == nil {
		t.Error("t1 deleted a value")
	}
	pcancel()
	drain(errs)

	// junkAt has t1 aim the answer to a JetStream API request it may make
	// at subject, which must not reach it: the answer goes back into the
	// terminals' account (in one account with the buckets, the server
	// wrote it there: an outside red team piled 1.88 million junk values
	// into the deny list that way). Then a party with full access (an
	// operator's tool; a server configured before the accounts) writes
	// junk there, which clearing must still mend.
	junkAt := func(subject string) {
		t.Helper()
		seen, err := admin.SubscribeSync(subject)
		if err != nil {
			t.Fatal(err)
		}
		defer seen.Unsubscribe()
		if err := admin.Flush(); err != nil {
			t.Fatal(err)
		}
		for range 20 {
			if err := nc.PublishRequest(lent("$JS.API.STREAM.INFO.KV_"+fare.DenyBucket), subject, nil); err != nil {
				t.Fatal(err)
			}
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		for {
			m, err := seen.NextMsg(500 * time.Millisecond)
			if err != nil {
				break
			}
			if bytes.Contains(m.Data, []byte("io.nats.jetstream.api")) {
				t.Fatalf("t1's aimed API answer reached %s: %.80q", subject, m.Data)
			}
			// clearing's own writes there (the owner record's renewals)
		}
		if err := admin.Publish(subject, []byte(`{"type":"io.nats.jetstream.api.v1.stream_info_response","junk":true}`)); err != nil {
			t.Fatal(err)
		}
	}

	// Junk at a listed card's key.
	before := t1.DenyRefusals()[terminal.DenyRefusedMalformed]
	junkAt("$KV." + fare.DenyBucket + "." + stolen)
	waitFor(t, "the junk refused at the gate", 5*time.Second, func() bool { return t1.DenyRefusals()[terminal.DenyRefusedMalformed] > before })
	checkDecision(t, t1, fare.Card, "stolen-A", "denied/deny-list")
	waitFor(t, "clearing's value put back", 5*time.Second, isClearings(true))

	// Junk at a key clearing never writes (not a medium's hex key), in
	// both buckets: its message deleted, leaving no purge marker
	// (an outside test left 1.88 million markers that way, each sent to
	// every gate at every start, until a new gate missed its list wait and
	// let a stolen card through). (Purging it used to loop for ever on its
	// own marker, thousands of purges a second, from one message.)
	msgs := func(bucket string) uint64 {
		st, err := ajs.Stream(ctx, "KV_"+bucket)
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Msgs
	}
	msgsBefore := map[string]uint64{fare.DenyBucket: msgs(fare.DenyBucket), fare.EnrolBucket: msgs(fare.EnrolBucket)}
	for _, bucket := range []string{fare.DenyBucket, fare.EnrolBucket} {
		junkAt("$KV." + bucket + ".x")
	}
	streamSeq := func(bucket string) uint64 {
		st, err := ajs.Stream(ctx, "KV_"+bucket)
		if err != nil {
			t.Fatal(err)
		}
		return st.CachedInfo().State.LastSeq
	}
	for _, bucket := range []string{fare.DenyBucket, fare.EnrolBucket} {
		kv, err := ajs.KeyValue(ctx, bucket)
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, bucket+": the junk key purged", 5*time.Second, func() bool {
			_, err := kv.Get(ctx, "x")
			return errors.Is(err, jetstream.ErrKeyNotFound)
		})
	}
	settled := map[string]uint64{fare.DenyBucket: streamSeq(fare.DenyBucket), fare.EnrolBucket: streamSeq(fare.EnrolBucket)}
	time.Sleep(time.Second)
	for bucket, seq := range settled {
		if now := streamSeq(bucket); now > seq+2 {
			t.Errorf("%s: %d more messages in the bucket's stream a second after the junk key was purged: clearing keeps purging", bucket, now-seq)
		}
		if n := msgs(bucket); n != msgsBefore[bucket] {
			t.Errorf("%s: %d messages after the junk was deleted, %d before it came: a marker or the junk stays", bucket, n, msgsBefore[bucket])
		}
	}
	// Markers a clearing before this left (it purged junk) are swept by the
	// next reconciliation, not purged again.
	denyBucketKV, err := ajs.KeyValue(ctx, fare.DenyBucket)
	if err != nil {
		t.Fatal(err)
	}
	swept := msgs(fare.DenyBucket)
	for _, k := range []string{"old-junk-1", "old-junk-2"} {
		if err := denyBucketKV.Purge(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	if n := msgs(fare.DenyBucket); n != swept+2 {
		t.Fatalf("%d messages after two purge markers, want %d", n, swept+2)
	}
	if err := cl.ReconcileGateList(ctx, fare.DenyGateList); err != nil {
		t.Fatal(err)
	}
	if n := msgs(fare.DenyBucket); n != swept {
		t.Errorf("%d messages after the reconciliation, want the markers swept: %d", n, swept)
	}

	// Junk at the owner record of clearing's event consumer (a terminal's
	// aimed reply wrote stream info over it before the accounts). Clearing
	// puts its own back at once (a garbage record used to keep clearing from ever starting
	// again, and would let another store take the consumer).
	ownersKV, err := ajs.KeyValue(ctx, clearing.OwnersBucket)
	if err != nil {
		t.Fatal(err)
	}
	ownerKey := "consumer." + clearing.EventConsumer
	rec, err := ownersKV.Get(ctx, ownerKey)
	if err != nil {
		t.Fatal(err)
	}
	var owner clearing.ConsumerOwner
	if err := json.Unmarshal(rec.Value(), &owner); err != nil || owner.Store == "" {
		t.Fatalf("owner record %s: %v", rec.Value(), err)
	}
	junkAt("$KV." + clearing.OwnersBucket + "." + ownerKey)
	waitFor(t, "the owner record overwritten and put back", 5*time.Second, func() bool {
		e, err := ownersKV.Get(ctx, ownerKey)
		if err != nil || e.Revision() <= rec.Revision()+1 {
			return false // not yet written over, or not yet put back
		}
		var now clearing.ConsumerOwner
		return json.Unmarshal(e.Value(), &now) == nil && now.Store == owner.Store
	})

	// Consumers clearing deletes: into another terminal's subject, durable.
	// Each has its own name: the server may still be removing the store
	// of a deleted one, and refuses a new consumer of that name meanwhile.
	var evilMade uint64
	for i, tc := range []struct {
		name, deliver string
		durable       bool
	}{
		{"into t2's confirmations", fare.AppliedSubject("t2"), false},
		{"into clearing's watermark requests", fare.WatermarkSubject("t2"), false},
		{"durable, into its own inbox", fare.TerminalInboxPrefix("t1") + ".kept", true},
	} {
		name := fmt.Sprintf("evil%d", i)
		cfg := map[string]any{"name": name, "deliver_subject": tc.deliver, "ack_policy": "none", "filter_subject": "$KV." + fare.DenyBucket + ".>"}
		if tc.durable {
			cfg["durable_name"] = name
			cfg["ack_policy"] = "explicit"
		}
		req, _ := json.Marshal(map[string]any{"stream_name": "KV_" + fare.DenyBucket, "config": cfg})
		resp, err := nc.Request(lent("$JS.API.CONSUMER.CREATE.KV_"+fare.DenyBucket+"."+name+".$KV."+fare.DenyBucket+".>"), req, 2*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if strings.Contains(string(resp.Data), `"error"`) {
			t.Logf("%s: the server refused it itself: %s", tc.name, resp.Data)
			continue
		}
		evilMade++
		start := time.Now()
		waitFor(t, tc.name+": consumer deleted by clearing", 5*time.Second, func() bool {
			_, err := ajs.Consumer(ctx, "KV_"+fare.DenyBucket, name)
			return errors.Is(err, jetstream.ErrConsumerNotFound)
		})
		t.Logf("%s: deleted %s after creation", tc.name, time.Since(start).Round(time.Millisecond))
	}

	// A value signed by another key, put by a party with full access.
	_, stranger, _ := ed25519.GenerateKey(nil)
	victim := fare.HashDeny(fare.Card, "victim")
	forged, _ := (&fare.GateEntry{List: fare.DenyGateList, Version: 50, Key: victim, Listed: true}).Sign(stranger)
	forgedEnrol, _ := (&fare.GateEntry{List: fare.EnrolGateList, Version: 50, Key: victim,
		Periods: []fare.EnrolmentPeriod{{From: time.Now().Add(-time.Hour).Truncate(time.Second), Until: time.Now().Add(time.Hour).Truncate(time.Second), Category: "concession"}}}).Sign(stranger)
	before = t1.DenyRefusals()[terminal.DenyRefusedUntrusted]
	if _, err := denyKV.Put(ctx, victim.String(), forged); err != nil {
		t.Fatal(err)
	}
	if err := admin.Publish("$KV."+fare.EnrolBucket+"."+victim.String(), forgedEnrol); err != nil {
		t.Fatal(err)
	}
	// t1 refuses both when its watch delivers them; under load clearing's
	// repair may purge them first (a watch that was resetting then never
	// sees them; terminal/deny_test.go covers the refusal itself). Either
	// way the gate must not honour them, checked next.
	purged := func(kv jetstream.KeyValue) bool {
		_, err := kv.Get(ctx, victim.String())
		return errors.Is(err, jetstream.ErrKeyNotFound)
	}
	enrolKV, err := ajs.KeyValue(ctx, fare.EnrolBucket)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "forged values refused or purged", 30*time.Second, func() bool {
		return t1.DenyRefusals()[terminal.DenyRefusedUntrusted] >= before+2 || (purged(denyKV) && purged(enrolKV))
	})
	if n := t1.DenyRefusals()[terminal.DenyRefusedUntrusted] - before; n < 2 {
		t.Logf("t1 refused %d of the 2 forged values; clearing purged the rest before its watch delivered them", n)
	}
	checkDecision(t, t1, fare.Card, "victim", "accepted/card")
	if c := t1.Category(fare.Card, "victim", time.Now()); c != "" {
		t.Fatalf("a forged enrolment gives %q", c)
	}
	waitFor(t, "the forged values purged", 5*time.Second, func() bool {
		_, err := denyKV.Get(ctx, victim.String())
		return errors.Is(err, jetstream.ErrKeyNotFound)
	})

	// A genuine but older value put back after an unlisting.
	if err := cl.Undeny(ctx, fare.Card, "stolen-A"); err != nil {
		t.Fatal(err)
	}
	waitDenyVersion(t, t1, 2, 10*time.Second)
	before = t1.DenyRefusals()[terminal.DenyRefusedStale]
	if _, err := denyKV.Put(ctx, stolen, genuine.Value()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the older listing refused as stale", 5*time.Second, func() bool { return t1.DenyRefusals()[terminal.DenyRefusedStale] > before })
	checkDecision(t, t1, fare.Card, "stolen-A", "accepted/card")
	waitFor(t, "clearing's tombstone put back", 5*time.Second, isClearings(false))

	// Through all of it t1's own watch was left alone: it is there, and a
	// new listing still reaches it.
	var watches []string
	st, err := ajs.Stream(ctx, "KV_"+fare.DenyBucket)
	if err != nil {
		t.Fatal(err)
	}
	for ci := range st.ListConsumers(ctx).Info() {
		if ci.Config.DeliverSubject != "" && strings.HasPrefix(ci.Config.DeliverSubject, fare.TerminalInboxPrefix("t1")+".") {
			watches = append(watches, ci.Name)
			t.Logf("t1's watch %s: deliver %s, ack %s, inactive threshold %s", ci.Name, ci.Config.DeliverSubject, ci.Config.AckPolicy, ci.Config.InactiveThreshold)
		}
	}
	if len(watches) != 1 {
		t.Errorf("t1's watches of the deny bucket: %v, want one", watches)
	}
	if r, d := cl.GateListGuard(); r < 4 || d != evilMade || evilMade == 0 {
		t.Errorf("clearing repaired %d values and deleted %d consumers; want at least 4 (junk, two forged, a replay) and the %d made", r, d, evilMade)
	}
	if err := cl.Deny(ctx, fare.Face, "subject-B", "fare evasion"); err != nil {
		t.Fatal(err)
	}
	waitDenyVersion(t, t1, 3, 10*time.Second)
	checkDecision(t, t1, fare.Face, "subject-B", "denied/deny-list")
}

func drain(errs chan error) {
	for {
		select {
		case <-errs:
		case <-time.After(200 * time.Millisecond):
			return
		}
	}
}

// TestGateListWatchCap: a terminal's key misused to make watch consumers
// that each follow the rules (ephemeral, no acks, into its own inbox, with
// interest kept in each so none expires), which could take every consumer
// slot the server allows the bucket: it holds at most its newest four, the
// older deleted at once, and another gate starting afterwards follows the
// list. (A gate reads its newest watch: a reconnect storm loses it none.)
func TestGateListWatchCap(t *testing.T) {
	ctx := context.Background()
	_, reg, keys, cl := startCity(t, 2)
	url := cl.NATSURL()
	nc := terminalConn(t, url, keys["t2"], "t2")
	defer nc.Close()
	stream := "KV_" + fare.DenyBucket
	const made = 60
	for i := range made {
		name := fmt.Sprintf("flood%02d", i)
		deliver := fare.TerminalInboxPrefix("t2") + "." + name
		sub, err := nc.SubscribeSync(deliver) // interest: the server never reaps it
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
		cfg := map[string]any{"name": name, "deliver_subject": deliver, "ack_policy": "none",
			"filter_subject": "$KV." + fare.DenyBucket + ".>", "inactive_threshold": int64(30 * time.Second)}
		req, _ := json.Marshal(map[string]any{"stream_name": stream, "config": cfg})
		resp, err := nc.Request(lent("$JS.API.CONSUMER.CREATE."+stream+"."+name+".$KV."+fare.DenyBucket+".>"), req, 2*time.Second)
		if err != nil || strings.Contains(string(resp.Data), `"error"`) {
			t.Fatalf("watch %d: %v %s", i, err, resp.Data)
		}
	}
	admin := adminConn(t, url)
	defer admin.Close()
	ajs, _ := jetstream.New(admin)
	st, err := ajs.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	held := func() []string {
		var names []string
		for ci := range st.ListConsumers(ctx).Info() {
			if strings.HasPrefix(ci.Config.DeliverSubject, fare.TerminalInboxPrefix("t2")+".") {
				names = append(names, ci.Name)
			}
		}
		slices.Sort(names)
		return names
	}
	// Both the server's listing and clearing's count (it counts a delete
	// once the server has answered it).
	waitFor(t, "t2 down to its newest 4 watches, every other one deleted by clearing", 10*time.Second, func() bool {
		_, d := cl.GateListGuard()
		return len(held()) <= 4 && d >= made-4
	})
	if got, want := held(), []string{"flood56", "flood57", "flood58", "flood59"}; !slices.Equal(got, want) {
		t.Errorf("t2's watches left: %v, want its newest %v", got, want)
	}
	// The sweep holds the cap too (the advisories can be missed).
	if n := cl.SweepConsumers(ctx); n != 0 {
		t.Errorf("the sweep deleted %d more", n)
	}
	// A gate starting now gets its watches and follows the list.
	t1 := startTerminal(t, t.TempDir(), url, reg, keys, "t1")
	defer t1.stop(t)
	if err := cl.Deny(ctx, fare.Card, "stolen-C", "reported stolen"); err != nil {
		t.Fatal(err)
	}
	waitDenyVersion(t, t1, 1, 10*time.Second)
	checkDecision(t, t1, fare.Card, "stolen-C", "denied/deny-list")
}
