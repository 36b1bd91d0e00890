package clearing_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
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
		{name: "its own deny feed", pub: fare.GateFeedSubject("t1", fare.FeedDeny)},
		{name: "the deny bucket's stream info", pub: "$JS.API.STREAM.INFO.KV_" + fare.DenyBucket, denied: true},
		{name: "a consumer on the deny bucket", pub: "$JS.API.CONSUMER.CREATE.KV_" + fare.DenyBucket + ".x.$KV." + fare.DenyBucket + ".>", denied: true},
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
	// No JetStream through the prefix the API was once lent under either.
	tjs, _ := jetstream.NewWithAPIPrefix(nc, lentAPI)
	bctx, bcancel := context.WithTimeout(ctx, 2*time.Second)
	if _, err := tjs.KeyValue(bctx, fare.DenyBucket); err == nil {
		t.Error("t1 bound to the deny bucket through JetStream's API")
	}
	bcancel()
	drain(errs)

	// junkAt has t1 aim clearing's answer to its feed request at subject,
	// and the feed's deliveries there, neither of which may reach it:
	// clearing answers and delivers only into the terminal's own inbox
	// (when terminals shared clearing's account and asked JetStream
	// themselves, an outside red team piled 1.88 million junk values into
	// the deny list through aimed answers). Then a party with full access
	// (an operator's tool; a server configured before the accounts) writes
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
		aimed, _ := json.Marshal(fare.GateFeedRequest{Deliver: subject})
		own, _ := json.Marshal(fare.GateFeedRequest{Deliver: nc.NewInbox()})
		for range 10 {
			if err := nc.PublishRequest(fare.GateFeedSubject("t1", fare.FeedEnrol), subject, own); err != nil {
				t.Fatal(err)
			}
		}
		resp, err := nc.Request(fare.GateFeedSubject("t1", fare.FeedEnrol), aimed, 5*time.Second)
		var grant fare.GateFeedGrant
		if err != nil || json.Unmarshal(resp.Data, &grant) != nil || !strings.Contains(grant.Error, "delivery subject") {
			t.Fatalf("a feed delivering to %s: %v %+v, want refused", subject, err, grant)
		}
		for {
			m, err := seen.NextMsg(500 * time.Millisecond)
			if err != nil {
				break
			}
			if bytes.Contains(m.Data, []byte(`"pending"`)) || m.Header.Get("Status") != "" {
				t.Fatalf("t1's aimed feed answer or delivery reached %s: %.80q %v", subject, m.Data, m.Header)
			}
			// clearing's own writes there (the owner record's renewals)
		}
		if err := admin.Publish(subject, []byte(`{"pending":0,"junk":true}`)); err != nil {
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

	// Consumers clearing deletes, made by a party of clearing's account
	// that is not clearing (terminals can make none): into another
	// terminal's subject, durable. Each has its own name: the server may
	// still be removing the store of a deleted one, and refuses a new
	// consumer of that name meanwhile.
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
		resp, err := admin.Request("$JS.API.CONSUMER.CREATE.KV_"+fare.DenyBucket+"."+name+".$KV."+fare.DenyBucket+".>", req, 2*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if strings.Contains(string(resp.Data), `"error"`) {
			t.Logf("%s: the server refused it itself: %s", tc.name, resp.Data)
			continue
		}
		evilMade++
		// Made with clearing's own credentials, so no advisory pins it on
		// a terminal: the sweep (every 5 s) finds it; asked for now.
		start := time.Now()
		cl.SweepConsumers(ctx)
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

// TestGateListWatchCap: a terminal's key misused to ask for its deny feed
// again and again, each time with a new delivery subject it keeps interest
// in (when terminals made their own watch consumers, such a key could take
// every consumer slot the server allows the bucket, and a gate starting
// meanwhile would decide from an empty list). Clearing grants at most one
// request a feed every half second, and each grant replaces the
// terminal's consumer of that feed: it holds one, delivering where its
// last granted request asked; another gate starting afterwards follows the
// list.
func TestGateListWatchCap(t *testing.T) {
	ctx := context.Background()
	_, reg, keys, cl := startCity(t, 2)
	url := cl.NATSURL()
	nc := terminalConn(t, url, keys["t2"], "t2")
	defer nc.Close()
	stream := "KV_" + fare.DenyBucket
	granted, refused := 0, 0
	last := ""
	for round := range 3 {
		if round > 0 {
			time.Sleep(600 * time.Millisecond)
		}
		for range 20 {
			deliver := nc.NewInbox()
			sub, err := nc.SubscribeSync(deliver) // interest: the server never reaps it
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Unsubscribe()
			req, _ := json.Marshal(fare.GateFeedRequest{Deliver: deliver})
			resp, err := nc.Request(fare.GateFeedSubject("t2", fare.FeedDeny), req, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			var g fare.GateFeedGrant
			if err := json.Unmarshal(resp.Data, &g); err != nil {
				t.Fatalf("answer %s: %v", resp.Data, err)
			}
			switch {
			case g.Error == "" && g.Consumer != "":
				granted++
				last = deliver
			case strings.Contains(g.Error, "asked again within"):
				refused++
			default:
				t.Fatalf("answer %+v", g)
			}
		}
	}
	if granted < 3 || granted > 6 || refused != 60-granted {
		t.Errorf("%d granted, %d refused as too soon; want about one a round", granted, refused)
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
	if got := held(); len(got) != 1 {
		t.Errorf("t2's consumers of the deny bucket: %v, want one", got)
	} else if ci, err := ajs.PushConsumer(ctx, stream, got[0]); err != nil {
		t.Fatal(err)
	} else if d := ci.CachedInfo().Config.DeliverSubject; d != last {
		t.Errorf("t2's consumer %s delivers to %q, want its last granted %q", got[0], d, last)
	}
	// The sweep finds nothing wrong with it.
	if n := cl.SweepConsumers(ctx); n != 0 {
		t.Errorf("the sweep deleted %d", n)
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

// TestGateFeedTakenOver: another holder of a gate's key asks for its deny
// feed, so that the grant moves the feed to its own inbox (an outside
// review kept a gate blind to the deny list that way, with nothing said
// anywhere; paced, one theft every half minute, it stayed under any count).
// Clearing tells the previous inbox that the feed moved: the gate, which
// did not ask, warns at once and takes its feed back, so a card listed
// just after a theft reaches it in seconds, not when its feed's silence
// (15 s) would have shown. Asked again and again, clearing warns too.
func TestGateFeedTakenOver(t *testing.T) {
	var clearingLogs, gateLogs syncBuffer
	dir, reg, keys, cl := startCityWith(t, 2, func(c *clearing.Config) {
		c.Logger = slog.New(slog.NewTextHandler(&clearingLogs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	})
	url := cl.NATSURL()
	t1 := startTerminalWith(t, dir, url, reg, keys, "t1", func(c *terminal.Config) {
		c.Logger = slog.New(slog.NewTextHandler(&gateLogs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	})
	defer t1.stop(t)
	select {
	case <-t1.ListsSynced():
	case <-time.After(15 * time.Second):
		t.Fatal("t1 never synced its lists")
	}
	waitFor(t, "t1 following its lists", 10*time.Second, t1.ListsLive)

	thief := terminalConn(t, url, keys["t1"], "t1")
	defer thief.Close()
	deliver := thief.NewInbox()
	sub, err := thief.SubscribeSync(deliver)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	req, _ := json.Marshal(fare.GateFeedRequest{Deliver: deliver})
	steal := func() bool {
		resp, err := thief.Request(fare.GateFeedSubject("t1", fare.FeedDeny), req, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var g fare.GateFeedGrant
		return json.Unmarshal(resp.Data, &g) == nil && g.Error == "" && g.Consumer != ""
	}

	// One theft, paced: the gate is told, says so and takes its feed back.
	time.Sleep(time.Second) // past the too-soon interval of the gate's own grant
	if !steal() {
		t.Fatal("the theft was refused: nothing to test")
	}
	before, _ := t1.DenyListVersion()
	if err := cl.Deny(context.Background(), fare.Card, "listed-after-the-theft", "test"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the gate's warning", 5*time.Second, func() bool {
		return strings.Contains(gateLogs.String(), "moved this gate's list feed to another inbox at a request the gate did not make")
	})
	waitDenyVersion(t, t1, before+1, 5*time.Second)

	// Again and again: clearing counts the grants and says so.
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(400 * time.Millisecond)
		defer tick.Stop()
		for {
			steal()
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	waitFor(t, "clearing's warning", 20*time.Second, func() bool {
		return strings.Contains(clearingLogs.String(), "granted again and again") && strings.Contains(clearingLogs.String(), "terminal=t1")
	})
	close(stop)
	<-done
	if cl.GateFeedRegrants() == 0 {
		t.Error("no regrant counted")
	}
	before, _ = t1.DenyListVersion()
	if err := cl.Deny(context.Background(), fare.Card, "listed-after-the-thefts", "test"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the gate following its lists again", 10*time.Second, t1.ListsLive)
	waitDenyVersion(t, t1, before+1, 10*time.Second)
}
