package gatefeed

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/faregate/faregate/fare"
)

// feedCity is a real nats-server with JetStream, the deny bucket, and a
// stand-in for clearing's side of the feeds (clearing/gatefeeds.go holds
// the real one, tested with real terminals in clearing's tests): it makes
// the push consumer a request asks for, with heartbeat hb, or refuses
// with refuse.
type feedCity struct {
	url    string
	js     jetstream.JetStream
	kv     jetstream.KeyValue
	hb     time.Duration
	refuse atomic.Value // string: the stand-in's refusal, "" for none
	// grantStream is the stream name the stand-in grants a resumption of
	// (standInStream unless a test makes it lie).
	grantStream atomic.Value
}

// standInStream is the stand-in's name for the bucket's stream.
const standInStream = "2026-12-05T03:00:00.5Z"

func startFeedCity(t *testing.T, hb time.Duration) *feedCity {
	t.Helper()
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(srv.Shutdown)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	kv, err := js.CreateKeyValue(context.Background(), jetstream.KeyValueConfig{Bucket: fare.DenyBucket})
	if err != nil {
		t.Fatal(err)
	}
	fc := &feedCity{url: srv.ClientURL(), js: js, kv: kv, hb: hb}
	fc.grantStream.Store(standInStream)
	_, err = nc.Subscribe(fare.GateFeedSubjects, func(m *nats.Msg) {
		term, feed, _ := strings.Cut(strings.TrimPrefix(m.Subject, "faregate.feed."), ".")
		var req fare.GateFeedRequest
		refuse, _ := fc.refuse.Load().(string)
		if refuse != "" || json.Unmarshal(m.Data, &req) != nil {
			b, _ := json.Marshal(fare.GateFeedGrant{Error: refuse})
			m.Respond(b)
			return
		}
		stream, filter, _ := fare.GateFeedStream(term, feed)
		name := fare.GateFeedConsumer(term, feed)
		ctx := context.Background()
		_ = js.DeleteConsumer(ctx, stream, name)
		cfg := jetstream.ConsumerConfig{Name: name, DeliverSubject: req.Deliver,
			DeliverPolicy: jetstream.DeliverLastPerSubjectPolicy, FilterSubject: filter, AckPolicy: jetstream.AckNonePolicy,
			FlowControl: true, IdleHeartbeat: hb, InactiveThreshold: time.Minute, MemoryStorage: true}
		grantStream, _ := fc.grantStream.Load().(string)
		if r := req.Resume; r != nil && r.Stream == standInStream {
			cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, r.Revision+1
		}
		cons, err := js.CreatePushConsumer(ctx, stream, cfg)
		if err != nil {
			b, _ := json.Marshal(fare.GateFeedGrant{Error: err.Error()})
			m.Respond(b)
			return
		}
		b, _ := json.Marshal(fare.GateFeedGrant{Consumer: name, Pending: cons.CachedInfo().NumPending, HeartbeatMs: hb.Milliseconds(),
			Stream: grantStream, Resumed: cfg.OptStartSeq > 0})
		m.Respond(b)
	})
	if err != nil {
		t.Fatal(err)
	}
	// The stand-in's subscription registered before a gate asks: a request
	// racing it found no responder (a fresh-clone CI run).
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return fc
}

// gate connects as terminal id would: its inbox under its prefix.
func (fc *feedCity) gate(t *testing.T, id string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(fc.url, nats.CustomInboxPrefix(fare.TerminalInboxPrefix(id)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// next reads one update, failing after a while.
func next(t *testing.T, w *Watch) (*Entry, bool) {
	t.Helper()
	select {
	case e, ok := <-w.Updates():
		return e, ok
	case <-time.After(10 * time.Second):
		t.Fatal("no update within 10 s")
		return nil, false
	}
}

// TestWholeThenFollow: the bucket's values read whole (the last of each
// key, in revision order), then nil, then what is written since, a
// deletion with its operation.
func TestWholeThenFollow(t *testing.T) {
	ctx := context.Background()
	fc := startFeedCity(t, time.Second)
	for _, kv := range [][2]string{{"a", "1"}, {"b", "2"}, {"a", "3"}, {"c", "4"}} {
		if _, err := fc.kv.Put(ctx, kv[0], []byte(kv[1])); err != nil {
			t.Fatal(err)
		}
	}
	w, err := Start(ctx, fc.gate(t, "t1"), "t1", fare.FeedDeny)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	var got []string
	for _, e := range upToNil(t, w) {
		got = append(got, e.Key+"="+string(e.Value))
	}
	if want := "b=2 a=3 c=4"; strings.Join(got, " ") != want {
		t.Fatalf("read whole: %v, want %s", got, want)
	}
	if _, err := fc.kv.Put(ctx, "d", []byte("5")); err != nil {
		t.Fatal(err)
	}
	if e, _ := next(t, w); e == nil || e.Key != "d" || string(e.Value) != "5" || e.Op != "" || e.Revision != 5 {
		t.Fatalf("a put after the whole: %+v", e)
	}
	if err := fc.kv.Delete(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if e, _ := next(t, w); e == nil || e.Key != "a" || e.Op != "DEL" {
		t.Fatalf("a deletion: %+v", e)
	}
}

// upToNil reads w up to its nil (the values read whole, or resumed).
func upToNil(t *testing.T, w *Watch) []*Entry {
	t.Helper()
	var out []*Entry
	for {
		e, ok := next(t, w)
		if !ok {
			t.Fatalf("ended before it was read whole: %v", w.Err())
		}
		if e == nil {
			return out
		}
		out = append(out, e)
	}
}

// readWhole reads w up to its nil and says how many values came.
func readWhole(t *testing.T, w *Watch) int {
	t.Helper()
	return len(upToNil(t, w))
}

// ended waits for w's end and returns why.
func ended(t *testing.T, w *Watch) error {
	t.Helper()
	for {
		if _, ok := next(t, w); !ok {
			return w.Err()
		}
	}
}

// TestFeedEnds: a consumer deleted (clearing gone, a node lost, the
// terminal's key asking again elsewhere) goes silent and the feed ends
// after three heartbeats; one made again for the same subscription starts
// its sequences over, a gap. Either way the caller reads the values whole
// again from a new feed.
func TestFeedEnds(t *testing.T) {
	ctx := context.Background()
	const stream = "KV_" + fare.DenyBucket
	name := fare.GateFeedConsumer("t1", fare.FeedDeny)
	for _, tc := range []struct {
		name string
		act  func(t *testing.T, fc *feedCity)
		want error
	}{
		{"consumer deleted", func(t *testing.T, fc *feedCity) {
			if err := fc.js.DeleteConsumer(ctx, stream, name); err != nil {
				t.Fatal(err)
			}
		}, ErrSilent},
		{"consumer made again", func(t *testing.T, fc *feedCity) {
			c, err := fc.js.PushConsumer(ctx, stream, name)
			if err != nil {
				t.Fatal(err)
			}
			cfg := c.CachedInfo().Config
			if err := fc.js.DeleteConsumer(ctx, stream, name); err != nil {
				t.Fatal(err)
			}
			if _, err := fc.js.CreatePushConsumer(ctx, stream, cfg); err != nil {
				t.Fatal(err)
			}
		}, ErrGap},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fc := startFeedCity(t, 100*time.Millisecond)
			for _, k := range []string{"a", "b"} {
				if _, err := fc.kv.Put(ctx, k, []byte("v")); err != nil {
					t.Fatal(err)
				}
			}
			w, err := Start(ctx, fc.gate(t, "t1"), "t1", fare.FeedDeny)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Stop()
			if n := readWhole(t, w); n != 2 {
				t.Fatalf("read %d values whole, want 2", n)
			}
			tc.act(t, fc)
			if err := ended(t, w); !errors.Is(err, tc.want) {
				t.Fatalf("ended with %v, want %v", err, tc.want)
			}
			// A new feed reads the values whole again.
			w2, err := Start(ctx, fc.gate(t, "t1"), "t1", fare.FeedDeny)
			if err != nil {
				t.Fatal(err)
			}
			defer w2.Stop()
			if n := readWhole(t, w2); n != 2 {
				t.Fatalf("a new feed read %d values whole, want 2", n)
			}
		})
	}
}

// TestFeedNotStarted: a feed there is no such thing as, a connection whose
// inbox is not the terminal's, and clearing's refusal, each named.
func TestFeedNotStarted(t *testing.T) {
	ctx := context.Background()
	fc := startFeedCity(t, time.Second)
	plain, err := nats.Connect(fc.url)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	for _, tc := range []struct {
		name, refuse, feed string
		nc                 *nats.Conn
		want               string
		is                 error
	}{
		{name: "no such feed", feed: "faces", nc: fc.gate(t, "t1"), want: `no such feed`},
		{name: "inbox not the terminal's", feed: fare.FeedDeny, nc: plain, want: "is not terminal t1's"},
		{name: "refused by clearing", refuse: "asked again within 500ms", feed: fare.FeedDeny, nc: fc.gate(t, "t1"), want: "asked again within", is: ErrRefused},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fc.refuse.Store(tc.refuse)
			w, err := Start(ctx, tc.nc, "t1", tc.feed)
			if err == nil {
				w.Stop()
				t.Fatal("started")
			}
			if !strings.Contains(err.Error(), tc.want) || (tc.is != nil && !errors.Is(err, tc.is)) {
				t.Fatalf("%v, want it to say %q", err, tc.want)
			}
		})
	}
}

// TestResume: a feed resumed from a copy's position yields only what was
// written after it (a deletion with its operation), then nil, then what
// comes; an invalid position reads whole; a resumption granted for a
// stream other than the one asked about is refused (the copy would miss
// the values it lacks).
func TestResume(t *testing.T) {
	ctx := context.Background()
	fc := startFeedCity(t, time.Second)
	for _, kv := range [][2]string{{"a", "1"}, {"b", "2"}, {"a", "3"}, {"c", "4"}} {
		if _, err := fc.kv.Put(ctx, kv[0], []byte(kv[1])); err != nil {
			t.Fatal(err)
		}
	}
	nc := fc.gate(t, "t1")
	w, err := Start(ctx, nc, "t1", fare.FeedDeny)
	if err != nil {
		t.Fatal(err)
	}
	var last uint64
	for _, e := range upToNil(t, w) {
		last = e.Revision
	}
	w.Stop()
	if w.Resumed() || w.Stream() != standInStream || last != 4 {
		t.Fatalf("whole read: resumed %v, stream %q, last revision %d", w.Resumed(), w.Stream(), last)
	}
	pos := fare.GateFeedPosition{Stream: w.Stream(), Revision: last}
	if _, err := fc.kv.Put(ctx, "d", []byte("5")); err != nil {
		t.Fatal(err)
	}
	if err := fc.kv.Delete(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(600 * time.Millisecond)
	for _, tc := range []struct {
		name    string
		pos     fare.GateFeedPosition
		resumed bool
		want    string
	}{
		{"resumed", pos, true, "d=5 b=DEL"},
		// The whole reads after it: e too, put while following.
		{"no position", fare.GateFeedPosition{}, false, "c=4 d=5 b=DEL e=6"},
		{"another stream", fare.GateFeedPosition{Stream: "2020-01-01T00:00:00Z", Revision: 4}, false, "c=4 d=5 b=DEL e=6"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, err := Resume(ctx, nc, "t1", fare.FeedDeny, tc.pos)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Stop()
			var got []string
			for _, e := range upToNil(t, w) {
				v := string(e.Value)
				if e.Op != "" {
					v = e.Op
				}
				got = append(got, e.Key+"="+v)
			}
			// The whole read's first value is a's: only its keys' last.
			if tc.want != "d=5 b=DEL" {
				got = got[1:]
			}
			if w.Resumed() != tc.resumed || strings.Join(got, " ") != tc.want {
				t.Fatalf("resumed %v, read %v; want %v, %s", w.Resumed(), got, tc.resumed, tc.want)
			}
			if _, err := fc.kv.Put(ctx, "e", []byte("6")); err != nil {
				t.Fatal(err)
			}
			if e, _ := next(t, w); e == nil || e.Key != "e" {
				t.Fatalf("followed by %+v, want e", e)
			}
			time.Sleep(600 * time.Millisecond)
		})
	}
	t.Run("a resumption of another stream granted", func(t *testing.T) {
		fc.grantStream.Store("2027-01-01T00:00:00Z")
		defer fc.grantStream.Store(standInStream)
		w, err := Resume(ctx, nc, "t1", fare.FeedDeny, pos)
		if err == nil {
			w.Stop()
			t.Fatal("started")
		}
		if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "a resumption of stream") {
			t.Fatalf("%v", err)
		}
	})
}
