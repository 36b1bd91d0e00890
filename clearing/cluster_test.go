package clearing_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/fare"
)

// natsCluster is three real nats-server processes routed into one
// JetStream cluster, with faregate's NATS authorization.
type natsCluster struct {
	urls  []string
	confs []string
	nodes []*natsServerProcess
}

func (c *natsCluster) url() string { return strings.Join(c.urls, ",") }

func startNATSCluster(t *testing.T, dir string, reg *clearing.Registry) *natsCluster {
	t.Helper()
	c := startNATSNodes(t, dir, reg)
	// JetStream answers once the meta group has a leader.
	nc := adminConn(t, c.url())
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the cluster's JetStream meta leader", 30*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := js.AccountInfo(ctx)
		return err == nil
	})
	return c
}

// startNATSNodes starts the three nodes of a cluster and returns at once:
// its JetStream may have no meta leader yet.
func startNATSNodes(t *testing.T, dir string, reg *clearing.Registry) *natsCluster {
	t.Helper()
	const n = 3
	client, route := make([]int, n), make([]int, n)
	for i := range n {
		client[i], route[i] = freePort(t), freePort(t)
	}
	auth := clearing.NATSServerConfig(registered(reg), testClearingUser(), clearing.Verifiers{})
	name := fmt.Sprintf("faregate-test-%d-%d", os.Getpid(), client[0])
	c := &natsCluster{}
	confs := make([]string, n)
	for i := range n {
		var routes []string
		for j := range n {
			if j != i {
				routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", route[j]))
			}
		}
		// A cluster name of its own: another test's cluster on this host
		// (packages test in parallel) that reuses a freed port cannot
		// route into this one.
		conf := fmt.Sprintf("server_name: n%d\nlisten: \"127.0.0.1:%d\"\njetstream {\n  store_dir: %q\n}\n"+
			"cluster {\n  name: %s\n  listen: \"127.0.0.1:%d\"\n  routes: [%s]\n}\n",
			i+1, client[i], filepath.Join(dir, fmt.Sprintf("n%d", i+1)), name, route[i], strings.Join(routes, ", ")) + auth
		confs[i] = filepath.Join(dir, fmt.Sprintf("n%d.conf", i+1))
		if err := os.WriteFile(confs[i], []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		c.urls = append(c.urls, fmt.Sprintf("nats://127.0.0.1:%d", client[i]))
	}
	c.confs = confs
	for _, conf := range confs {
		c.nodes = append(c.nodes, startNATSServer(t, conf))
	}
	return c
}

// TestClearingOnAColdCluster: clearing started as soon as the three nodes
// listen, before their JetStream has a meta leader (as a compose file or
// a host's boot starts them together), waits for the cluster and creates
// its streams with three replicas; it used to exit after about 6 s with
// "stream FAREGATE_QUARANTINE: context deadline exceeded".
func TestClearingOnAColdCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	reg, _ := testRegistry(1)
	led := openLedger(t, filepath.Join(dir, "chain"))
	defer led.Close()
	cluster := startNATSNodes(t, dir, reg)
	cl, err := clearing.Open(ctx, clearing.Config{DataDir: filepath.Join(dir, "clearing"), NATSURL: cluster.url(),
		NATSSeedFile: clearingSeedFile(t), Registry: reg, Ledger: led, Period: time.Hour, Logger: quietLogger(), ConfirmKey: testConfirmKey})
	if err != nil {
		t.Fatalf("clearing started beside a cold cluster: %v", err)
	}
	defer cl.Close()
	nc := adminConn(t, cluster.url())
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, fare.EventStream)
	if err != nil || st.CachedInfo().Config.Replicas != 3 {
		t.Fatalf("the event stream: %v (replicas %d), want 3 replicas", err, st.CachedInfo().Config.Replicas)
	}
	// The owners bucket scaled down to one replica by hand (after running
	// with --stream-replicas 1, say): clearing started again scales it
	// back up and starts. (An outside test on its own cluster saw the
	// first request after the scale-up go unanswered, and clearing exit
	// with "claim consumer clearing: context deadline exceeded"; these
	// requests are now retried while the cluster does not answer, as
	// placement is (TestRetryPlacement). Here the request was answered
	// before that change too.)
	cl.Close()
	owners, err := js.Stream(ctx, "KV_"+clearing.OwnersBucket)
	if err != nil {
		t.Fatal(err)
	}
	oc := owners.CachedInfo().Config
	oc.Replicas = 1
	if _, err := js.UpdateStream(ctx, oc); err != nil {
		t.Fatal(err)
	}
	cl, err = clearing.Open(ctx, clearing.Config{DataDir: filepath.Join(dir, "clearing"), NATSURL: cluster.url(),
		NATSSeedFile: clearingSeedFile(t), Registry: reg, Ledger: led, Period: time.Hour, Logger: quietLogger(), ConfirmKey: testConfirmKey})
	if err != nil {
		t.Fatalf("clearing started again with its owners bucket at one replica: %v", err)
	}
	defer cl.Close()
	if owners, err = js.Stream(ctx, "KV_"+clearing.OwnersBucket); err != nil || owners.CachedInfo().Config.Replicas != 3 {
		t.Fatalf("the owners bucket: %v, want it back at 3 replicas", err)
	}
}

// TestStreamsOnACluster: on a real 3-node cluster clearing creates its
// streams and gate-list buckets with three replicas; a second clearing
// store is refused the event consumer the first owns; it never rewrites a
// stream the operator made (replicas and limits stay, even when clearing
// is configured for one replica), and refuses one lacking what it relies
// on, naming the difference, rather than "fixing" it.
func TestStreamsOnACluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	dir := t.TempDir()
	reg, keys := testRegistry(2)
	cluster := startNATSCluster(t, dir, reg)
	led := openLedger(t, filepath.Join(dir, "chain"))
	defer led.Close()

	nc := adminConn(t, cluster.url())
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	info := func(name string) jetstream.StreamConfig {
		t.Helper()
		for try := 0; ; try++ {
			// One JetStream API call on a cluster can go unanswered while
			// assets move: bounded, and asked again.
			sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			st, err := js.Stream(sctx, name)
			cancel()
			if err == nil {
				return st.CachedInfo().Config
			}
			if try == 5 {
				t.Fatalf("stream %s: %v", name, err)
			}
		}
	}
	deleteStreams := func() {
		t.Helper()
		for _, s := range []string{fare.EventStream, fare.QuarantineStream} {
			if err := js.DeleteStream(ctx, s); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
				t.Fatal(err)
			}
		}
	}
	open := func(name string, limits clearing.Limits) (*clearing.Clearing, error) {
		return clearing.Open(ctx, clearing.Config{DataDir: filepath.Join(dir, "clearing-"+name), NATSURL: cluster.url(),
			NATSSeedFile: clearingSeedFile(t), Registry: reg, Ledger: led, Period: time.Hour, Logger: quietLogger(),
			ConfirmKey: testConfirmKey, Limits: limits})
	}

	t.Run("created by clearing", func(t *testing.T) {
		// Where the time goes, and clearing's log, when this fails.
		began, clLog := time.Now(), &syncBuffer{}
		step := func(what string) { t.Logf("%8s %s", time.Since(began).Round(time.Millisecond), what) }
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("clearing's log:\n%s", clLog.String())
			}
		})
		cl := startClearing(t, clearing.Config{DataDir: filepath.Join(dir, "clearing"), NATSURL: cluster.url(),
			Registry: reg, Ledger: led, Period: time.Hour, Logger: slog.New(slog.NewTextHandler(clLog, &slog.HandlerOptions{Level: slog.LevelDebug}))})
		step("clearing open")
		term := startTerminal(t, dir, cluster.url(), reg, keys, "t1")
		for i := range 5 {
			tap(t, term.Terminal, fmt.Sprintf("card-%d", i), fare.Entry)
		}
		waitFor(t, "t1's outbox drained through the cluster", 30*time.Second, func() bool { return term.Pending() == 0 })
		step("taps drained")
		// The deny list reaches the gate through the cluster, and clearing's
		// consumer guard leaves the gate's own watches alone: on a cluster
		// the API audit of a request forwarded to the stream leader carries
		// only the response.
		if err := cl.Deny(ctx, fare.Card, "card-stolen", "reported stolen"); err != nil {
			t.Fatal(err)
		}
		waitDenyVersion(t, term, 1, 20*time.Second)
		step("deny list at the gate")
		checkDecision(t, term, fare.Card, "card-stolen", "denied/deny-list")
		// A gate's feed is granted through whichever node it is connected
		// to (clearing makes the consumer), and delivers there (t2: asking
		// again as t1 would replace the running gate's feed).
		for _, node := range cluster.urls {
			nc := terminalConn(t, node, keys["t2"], "t2")
			deliver := nc.NewInbox()
			sub, err := nc.SubscribeSync(deliver)
			if err != nil {
				t.Fatal(err)
			}
			req, _ := json.Marshal(fare.GateFeedRequest{Deliver: deliver})
			resp, err := nc.Request(fare.GateFeedSubject("t2", fare.FeedDeny), req, 5*time.Second)
			var g fare.GateFeedGrant
			if err != nil || json.Unmarshal(resp.Data, &g) != nil || g.Consumer == "" || g.Pending == 0 {
				t.Fatalf("t2's deny feed through %s: %v %+v", node, err, g)
			}
			if m, err := sub.NextMsg(10 * time.Second); err != nil || !strings.HasPrefix(m.Subject, "$KV."+fare.DenyBucket+".") {
				t.Fatalf("t2's deny feed through %s delivered %v (%v)", node, m, err)
			}
			nc.Close()
			step("t2's deny feed through " + node)
			time.Sleep(600 * time.Millisecond) // a feed may be asked for again after half a second
		}
		// One made with clearing's own credentials (an operator's tool, or
		// one whose advisory clearing missed while reconnecting) is not
		// pinned on a terminal by the advisories: the sweep finds it.
		req := fmt.Sprintf(`{"stream_name":"KV_%s","config":{"name":"swept","deliver_subject":%q,"ack_policy":"none","filter_subject":"$KV.%s.>"}}`,
			fare.DenyBucket, fare.AppliedSubject("t2"), fare.DenyBucket)
		if resp, err := nc.Request("$JS.API.CONSUMER.CREATE.KV_"+fare.DenyBucket+".swept.$KV."+fare.DenyBucket+".>", []byte(req), 5*time.Second); err != nil || strings.Contains(string(resp.Data), `"error"`) {
			t.Fatalf("consumer made with clearing's credentials: %v", err)
		}
		waitFor(t, "the sweep deleting the consumer the advisories did not pin on a terminal", 30*time.Second, func() bool {
			return consumerGone(ctx, js, "KV_"+fare.DenyBucket, "swept")
		})
		time.Sleep(6 * time.Second) // one more sweep: it must leave the gate's own watches alone
		if _, deleted := cl.GateListGuard(); deleted != 1 {
			t.Errorf("the guard deleted %d consumers, want the rogue one only (the gates' feeds kept)", deleted)
		}
		if err := cl.Deny(ctx, fare.Card, "card-stolen-2", "reported stolen"); err != nil {
			t.Fatal(err)
		}
		waitDenyVersion(t, term, 2, 20*time.Second)
		checkDecision(t, term, fare.Card, "card-stolen", "denied/deny-list")
		term.stop(t)
		cl.stop(t)
		if s := cl.Stats(); s.Applied != 5 {
			t.Errorf("applied %d, want 5", s.Applied)
		}
		for _, s := range []string{fare.EventStream, fare.QuarantineStream, "KV_" + fare.DenyBucket, "KV_" + fare.EnrolBucket} {
			if r := info(s).Replicas; r != clearing.DefaultClusterReplicas {
				t.Errorf("%s: %d replicas on a cluster, want %d", s, r, clearing.DefaultClusterReplicas)
			}
		}
	})

	t.Run("one store per consumer", func(t *testing.T) {
		// A second clearing store on the same cluster would split every
		// terminal's events with the first: refused, naming the owner.
		cl, err := open("second", clearing.Limits{})
		if err == nil {
			cl.Close()
			t.Fatal("a second clearing store opened on the first one's event consumer")
		}
		if !errors.Is(err, clearing.ErrConsumerOwned) || !strings.Contains(err.Error(), filepath.Join(dir, "clearing")) {
			t.Errorf("second store: %v, want ErrConsumerOwned naming the owner's data dir", err)
		}
		// The owner itself restarts at once (after a crash too: ownership
		// is the store's, not the process's).
		cl, err = clearing.Open(ctx, clearing.Config{DataDir: filepath.Join(dir, "clearing"), NATSURL: cluster.url(),
			NATSSeedFile: clearingSeedFile(t), Registry: reg, Ledger: led, Period: time.Hour, Logger: quietLogger(), ConfirmKey: testConfirmKey})
		if err != nil {
			t.Fatalf("the owner's restart: %v", err)
		}
		cl.Close()
	})

	t.Run("the operator's stream is kept", func(t *testing.T) {
		deleteStreams()
		mine := jetstream.StreamConfig{Name: fare.EventStream, Subjects: []string{fare.EventSubjects}, Storage: jetstream.FileStorage,
			Retention: jetstream.InterestPolicy, Discard: jetstream.DiscardNew, DiscardNewPerSubject: true, MaxMsgsPerSubject: 5000,
			MaxAge: 72 * time.Hour, Replicas: 3, Duplicates: 5 * time.Minute, NoAck: true}
		if _, err := js.CreateStream(ctx, mine); err != nil {
			t.Fatal(err)
		}
		cl, err := open("kept", clearing.Limits{Replicas: 1})
		if err != nil {
			t.Fatalf("open on the operator's stream: %v", err)
		}
		cl.Close()
		got := info(fare.EventStream)
		if got.Replicas != 3 || got.MaxAge != mine.MaxAge || got.MaxMsgsPerSubject != mine.MaxMsgsPerSubject || got.Duplicates != mine.Duplicates {
			t.Errorf("clearing changed the operator's stream: %+v", got)
		}
	})

	bad := []struct {
		name string
		edit func(*jetstream.StreamConfig)
		want string
	}{
		{"limits retention", func(c *jetstream.StreamConfig) { c.Retention = jetstream.LimitsPolicy }, "retention"},
		{"discard old", func(c *jetstream.StreamConfig) { c.Discard, c.DiscardNewPerSubject = jetstream.DiscardOld, false }, "discard"},
		{"memory storage", func(c *jetstream.StreamConfig) { c.Storage = jetstream.MemoryStorage }, "storage"},
		{"narrower subjects", func(c *jetstream.StreamConfig) { c.Subjects = []string{"faregate.events.metro.>"} }, "subjects"},
		{"publish acks", func(c *jetstream.StreamConfig) { c.NoAck = false }, "publish acks on"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			deleteStreams()
			cfg := jetstream.StreamConfig{Name: fare.EventStream, Subjects: []string{fare.EventSubjects}, Storage: jetstream.FileStorage,
				Retention: jetstream.InterestPolicy, Discard: jetstream.DiscardNew, DiscardNewPerSubject: true, MaxMsgsPerSubject: 5000, Replicas: 3, NoAck: true}
			tc.edit(&cfg)
			if _, err := js.CreateStream(ctx, cfg); err != nil {
				t.Fatal(err)
			}
			cl, err := open(strings.ReplaceAll(tc.name, " ", "-"), clearing.Limits{})
			if err == nil {
				cl.Close()
				t.Fatal("clearing opened on a stream lacking what it relies on")
			}
			if !errors.Is(err, clearing.ErrStreamMismatch) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want ErrStreamMismatch naming %q", err, tc.want)
			}
			if got := info(fare.EventStream); got.Retention != cfg.Retention || got.Storage != cfg.Storage || got.Discard != cfg.Discard {
				t.Errorf("clearing rewrote the operator's stream: %+v", got)
			}
		})
	}

	t.Run("stream leader killed", func(t *testing.T) {
		// SIGKILL the node leading the event stream while a terminal taps:
		// the replicas elect a new leader, clients reconnect, and every tap
		// is applied once.
		deleteStreams()
		cl := startClearing(t, clearing.Config{DataDir: filepath.Join(dir, "clearing-failover"), NATSURL: cluster.url(),
			Registry: reg, Ledger: led, Period: time.Hour})
		defer cl.stop(t)
		term := startTerminal(t, filepath.Join(dir, "failover"), cluster.url(), reg, keys, "t1")
		defer term.stop(t)
		const before, after = 20, 30
		for i := range before {
			tap(t, term.Terminal, fmt.Sprintf("before-%d", i), fare.Entry)
		}
		waitFor(t, "taps before the kill confirmed", 30*time.Second, func() bool { return term.Pending() == 0 })
		sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
		st, err := js.Stream(sctx, fare.EventStream)
		scancel()
		if err != nil {
			t.Fatal(err)
		}
		leader := st.CachedInfo().Cluster.Leader
		var idx int
		if _, err := fmt.Sscanf(leader, "n%d", &idx); err != nil || idx < 1 || idx > len(cluster.nodes) {
			t.Fatalf("stream leader %q", leader)
		}
		idx--
		if err := cluster.nodes[idx].cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		killed := time.Now()
		for i := range after {
			tap(t, term.Terminal, fmt.Sprintf("after-%d", i), fare.Entry)
			time.Sleep(20 * time.Millisecond)
		}
		waitFor(t, "every tap confirmed after the stream leader died", 2*time.Minute, func() bool { return term.Pending() == 0 })
		took := time.Since(killed)
		if s := cl.Stats(); s.Applied != before+after {
			t.Errorf("applied %d, want %d (each tap once)", s.Applied, before+after)
		}
		var now string
		sctx, scancel = context.WithTimeout(ctx, 10*time.Second)
		if st, err := js.Stream(sctx, fare.EventStream); err == nil {
			now = st.CachedInfo().Cluster.Leader
		}
		scancel()
		t.Logf("stream leader %s killed: all %d later taps confirmed %s after the kill; leader now %s", leader, after, took.Round(time.Millisecond), now)
		cluster.nodes[idx] = startNATSServer(t, cluster.confs[idx])
	})
}

// consumerGone says whether stream's consumer name is gone. Each ask is
// bounded: on a cluster a JetStream API request about a consumer being
// deleted can go unanswered, and an unbounded one would wait for the whole
// test's context.
func consumerGone(ctx context.Context, js jetstream.JetStream, stream, name string) bool {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err := js.Consumer(cctx, stream, name)
	return errors.Is(err, jetstream.ErrConsumerNotFound)
}
