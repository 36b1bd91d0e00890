package clearing

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/faregate/faregate/fare"
)

// natsUser makes a fresh NKey user: its public key and a connect option.
func natsUser(t *testing.T) (string, nats.Option) {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	return pub, nats.Nkey(pub, kp.Sign)
}

// clearingAndT1 are users as NATSUsers makes them: clearing's, in its
// account, and terminal t1's of metro, in the terminals', with their
// connect options.
func clearingAndT1(t *testing.T) (users []*server.NkeyUser, clearingOpt, termOpt nats.Option) {
	t.Helper()
	clearingPub, clearingOpt := natsUser(t)
	termPub, termOpt := natsUser(t)
	pub, sub := fare.TerminalPermissions("metro", "t1")
	return []*server.NkeyUser{
		{Nkey: clearingPub, Account: server.NewAccount(ClearingAccount)},
		{Nkey: termPub, Account: server.NewAccount(TerminalsAccount), Permissions: &server.Permissions{
			Publish: &server.SubjectPermission{Allow: pub}, Subscribe: &server.SubjectPermission{Allow: sub}}},
	}, clearingOpt, termOpt
}

// TestTerminalsCannotTakeClearingsConnections: the terminals' account
// takes at most the embedded server's connection limit less the ones kept
// for clearing and its verifiers, so a terminal (a stolen key) opening all
// it can does not keep clearing off its own server.
func TestTerminalsCannotTakeClearingsConnections(t *testing.T) {
	users, clearingOpt, termOpt := clearingAndT1(t)
	const limit = 100
	e, err := StartEmbeddedNATS(EmbeddedOptions{Dir: t.TempDir(), Port: -1, Users: users, maxConn: limit, Logger: auditLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown()
	terminalConns := max(limit-natsReservedConns, limit/2)
	var conns []*nats.Conn
	defer func() {
		for _, nc := range conns {
			nc.Close()
		}
	}()
	for i := range terminalConns + 5 {
		nc, err := nats.Connect(e.ClientURL(), termOpt, nats.NoReconnect(), nats.CustomInboxPrefix(fare.TerminalInboxPrefix("t1")))
		if i < terminalConns {
			if err != nil {
				t.Fatalf("terminal connection %d of %d refused: %v", i+1, terminalConns, err)
			}
			conns = append(conns, nc)
			continue
		}
		if err == nil {
			conns = append(conns, nc)
			t.Fatalf("terminal connection %d admitted, over the terminals' %d", i+1, terminalConns)
		}
		t.Logf("terminal connection %d: %v", i+1, err)
	}
	for i := range 3 {
		nc, err := nats.Connect(e.ClientURL(), clearingOpt, nats.NoReconnect())
		if err != nil {
			t.Fatalf("clearing's connection %d refused while the terminals hold all theirs: %v", i+1, err)
		}
		conns = append(conns, nc)
	}
}

// TestGlobalStoreMigrated: a data dir whose JetStream store was kept under
// the server's global account (before clearing's account) keeps its
// streams, now clearing's.
func TestGlobalStoreMigrated(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	old, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, NoSigs: true,
		StoreDir: filepath.Join(dir, "jetstream")})
	if err != nil {
		t.Fatal(err)
	}
	go old.Start()
	if !old.ReadyForConnections(10 * time.Second) {
		t.Fatal("old server not ready")
	}
	nc, err := nats.Connect(old.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: fare.EventStream, Subjects: []string{fare.EventSubjects}, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := js.Publish(ctx, fare.EventSubject("metro", "t1"), fmt.Appendf(nil, "event %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	nc.Close()
	old.Shutdown()
	old.WaitForShutdown()

	clearingPub, clearingOpt := natsUser(t)
	e, err := StartEmbeddedNATS(EmbeddedOptions{Dir: dir, Port: -1, Logger: auditLogger(),
		Users: []*server.NkeyUser{{Nkey: clearingPub, Account: server.NewAccount(ClearingAccount)}}})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown()
	nc, err = nats.Connect(e.ClientURL(), clearingOpt)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ = jetstream.New(nc)
	st, err := js.Stream(ctx, fare.EventStream)
	if err != nil {
		t.Fatalf("the global account's event stream after the move: %v", err)
	}
	if info, err := st.Info(ctx); err != nil || info.State.Msgs != 3 {
		t.Fatalf("the moved event stream: %+v, %v; want its 3 messages", info, err)
	}
	if _, err := st.GetMsg(ctx, 1); errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Fatal("the moved stream's first message is gone")
	}
}

// TestTerminalSubscriptionsBounded, from a stolen terminal key's side: a
// connection asking for more subscriptions than a gate needs gets at most
// terminalSubs, while clearing's may hold more (an outside red team grew
// clearing's memory by 2.4 GB in 37 s with 600 connections of 4,096 each).
func TestTerminalSubscriptionsBounded(t *testing.T) {
	users, clearingOpt, termOpt := clearingAndT1(t)
	e, err := StartEmbeddedNATS(EmbeddedOptions{Dir: t.TempDir(), Port: -1, Users: users, Logger: auditLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown()
	// held is how many subscriptions a connection in account holds after
	// asking for ask.
	held := func(opt nats.Option, account string, ask int) int {
		t.Helper()
		nc, err := nats.Connect(e.ClientURL(), opt, nats.NoReconnect(), nats.CustomInboxPrefix(fare.TerminalInboxPrefix("t1")),
			nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		for i := range ask {
			if _, err := nc.SubscribeSync(fmt.Sprintf("%s.s%d", fare.TerminalInboxPrefix("t1"), i)); err != nil {
				break
			}
		}
		if err := nc.FlushTimeout(5 * time.Second); err != nil {
			t.Fatal(err)
		}
		conns, err := e.Server().Connz(&server.ConnzOptions{Account: account})
		if err != nil || len(conns.Conns) != 1 {
			t.Fatalf("connections of %s: %+v, %v", account, conns, err)
		}
		return int(conns.Conns[0].NumSubs)
	}
	if got := held(termOpt, TerminalsAccount, 1000); got > terminalSubs {
		t.Errorf("a terminal's connection holds %d subscriptions, over the %d it may", got, terminalSubs)
	} else {
		t.Logf("a terminal's connection asking for 1,000 holds %d", got)
	}
	if got := held(clearingOpt, ClearingAccount, 300); got != 300 {
		t.Errorf("clearing's connection holds %d of the 300 subscriptions it asked for", got)
	}
}

// TestJetStreamAfterUsersReload: a registry change reloads the embedded
// server's accounts; clearing's account keeps its JetStream and streams.
func TestJetStreamAfterUsersReload(t *testing.T) {
	both, clearingOpt, _ := clearingAndT1(t)
	users := func(withTerminal bool) []*server.NkeyUser {
		if withTerminal {
			return both
		}
		return both[:1]
	}
	e, err := StartEmbeddedNATS(EmbeddedOptions{Dir: t.TempDir(), Port: -1, Users: users(false), Logger: auditLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown()
	nc, err := nats.Connect(e.ClientURL(), clearingOpt)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	js, _ := jetstream.New(nc)
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: fare.DenyBucket})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	// Asked all through the reloads, as clearing's own work is.
	stop := make(chan struct{})
	failed := make(chan error, 1)
	go func() {
		for {
			select {
			case <-stop:
				close(failed)
				return
			default:
			}
			if _, err := kv.Get(ctx, "k"); err != nil {
				failed <- err
				return
			}
		}
	}()
	for i, with := range []bool{true, false, true, false, true, false, true} {
		if err := e.SetUsers(users(with)); err != nil {
			t.Fatal(err)
		}
		if _, err := kv.Put(ctx, "k", []byte("v")); err != nil {
			t.Fatalf("reload %d: a put on the connection made before: %v", i+1, err)
		}
		if _, err := kv.ListKeys(ctx); err != nil {
			t.Fatalf("reload %d: a watch on the connection made before: %v", i+1, err)
		}
		nc2, err := nats.Connect(e.ClientURL(), clearingOpt)
		if err != nil {
			t.Fatal(err)
		}
		js2, _ := jetstream.New(nc2)
		if _, err := js2.KeyValue(ctx, fare.DenyBucket); err != nil {
			t.Fatalf("reload %d: the bucket on a new connection: %v", i+1, err)
		}
		nc2.Close()
	}
	close(stop)
	if err := <-failed; err != nil {
		t.Fatalf("a read during a reload: %v", err)
	}
}

// TestVerifierAcksHoldNoAnswers: every service clearing's account lends
// the verifiers says how long the way back for an answer stays open, and
// an ack's is short: a verifier's acks ask for no answer, and an outside
// review's flood of acks with reply subjects (JetStream never answers an
// ack of a sequence it does not have) held a million ways back for the
// 2-minute default, 2.5 GB of clearing's memory. Here 2,000 such acks are
// all gone within seconds.
func TestVerifierAcksHoldNoAnswers(t *testing.T) {
	users, clearingOpt, _ := clearingAndT1(t)
	vkp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	vpub, _ := vkp.PublicKey()
	vusers, _ := NATSUsers(nil, users[0].Nkey, Verifiers{Partitions: 2, Keys: []VerifierKey{{Partition: 0, Key: vpub}}})
	cfg := NATSAccounts(vusers, nil, 0)
	for _, sv := range verifierServices(0) {
		if !strings.Contains(cfg, fmt.Sprintf("{ service: %q%s", sv.subject, sv.exportOpts())) || sv.threshold == "" {
			t.Errorf("service %s exported without its response threshold:\n%s", sv.subject, cfg)
		}
	}
	e, err := StartEmbeddedNATS(EmbeddedOptions{Dir: t.TempDir(), Port: -1, Users: vusers, Logger: auditLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown()
	// The partition's consumer, as clearing makes it: acks reach it.
	cnc, err := nats.Connect(e.ClientURL(), clearingOpt)
	if err != nil {
		t.Fatal(err)
	}
	defer cnc.Close()
	js, _ := jetstream.New(cnc)
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: fare.EventStream, Subjects: []string{"faregate.events.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateOrUpdateConsumer(ctx, fare.EventStream, jetstream.ConsumerConfig{Durable: VerifierConsumer(0), AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(e.ClientURL(), nats.Nkey(vpub, vkp.Sign), nats.CustomInboxPrefix(VerifierInbox(vpub)))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	for i := range 2000 {
		if err := nc.PublishRequest(fmt.Sprintf("$JS.ACK.%s.%s.1.%d.%d.1.0", fare.EventStream, VerifierConsumer(0), 900000+i, 900000+i), VerifierInbox(vpub)+".x", []byte("+ACK")); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	acc, err := e.Server().LookupAccount(ClearingAccount)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("ways back held just after the acks: %d", acc.NumPendingAllResponses())
	// The server sweeps them at about the threshold: gone within 2 s of
	// 1 s (the default would hold them 2 minutes).
	deadline := time.Now().Add(4 * time.Second)
	for acc.NumPendingAllResponses() > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if n := acc.NumPendingAllResponses(); n > 0 {
		t.Errorf("%d ways back still held 4 s after 2,000 acks with reply subjects, want none", n)
	}
}

// TestCheckVerifierKeys: a verifier key that is clearing's own NATS user
// or a terminal's is refused naming the flag and whose it is (the server
// said only "Duplicate nkey", and `nats config` called it a bug); a key of
// its own passes.
func TestCheckVerifierKeys(t *testing.T) {
	clearingPub, _ := natsUser(t)
	own, _ := natsUser(t)
	seed := make([]byte, ed25519.SeedSize)
	seed[0] = 7
	tkey := ed25519.NewKeyFromSeed(seed)
	termUser, err := fare.NATSUserKey(tkey.Public().(ed25519.PublicKey), "t1")
	if err != nil {
		t.Fatal(err)
	}
	terms := []RegisteredTerminal{{TerminalPublicKey: TerminalPublicKey{ID: "t1", Operator: "metro", PublicKey: tkey.Public().(ed25519.PublicKey)}}}
	for _, tc := range []struct {
		key, want string
	}{
		{own, ""},
		{clearingPub, "--verifier-key 0=" + clearingPub + " is clearing's own NATS user"},
		{termUser, "is terminal t1's NATS user"},
	} {
		err := CheckVerifierKeys(terms, clearingPub, Verifiers{Partitions: 1, Keys: []VerifierKey{{Partition: 0, Key: tc.key}}})
		if tc.want == "" {
			if err != nil {
				t.Errorf("a key of its own: %v", err)
			}
			continue
		}
		if !errors.Is(err, ErrVerifierKeyTaken) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("key %s: %v, want ErrVerifierKeyTaken saying %q", tc.key, err, tc.want)
		}
	}
}

// TestVerifierAccountsKeepTheirConnections: the embedded server keeps
// verifierConns for each verifiers' account beside clearing's reserve, out
// of the terminals' reach, so that one partition's verifiers cannot take
// the connections clearing and the others need (an outside re-check, code
// reading: every verifiers' account could take 64 of a reserve of 64).
func TestVerifierAccountsKeepTheirConnections(t *testing.T) {
	clearingPub, _ := natsUser(t)
	v0, _ := natsUser(t)
	v1, _ := natsUser(t)
	users, _ := NATSUsers(nil, clearingPub, Verifiers{Partitions: 2, Keys: []VerifierKey{{Partition: 0, Key: v0}, {Partition: 1, Key: v1}}})
	opts := server.Options{MaxConn: 1000}
	if err := setAccounts(&opts, users); err != nil {
		t.Fatal(err)
	}
	want := map[string]int{TerminalsAccount: 1000 - natsReservedConns - 2*verifierConns, VerifierAccount([]int{0}): verifierConns, VerifierAccount([]int{1}): verifierConns}
	for _, acc := range opts.Accounts {
		if w, ok := want[acc.Name]; ok {
			if got := acc.MaxActiveConnections(); got != w {
				t.Errorf("account %s: at most %d connections, want %d", acc.Name, got, w)
			}
			delete(want, acc.Name)
		}
	}
	if len(want) > 0 {
		t.Errorf("accounts missing: %v", want)
	}
}
