package clearing

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestForwardID: a redelivery of one event-stream message keeps its
// forward's id (the verified stream drops the repeat); the same bytes sent
// again (a terminal's resend after the first copy was consumed but never
// applied) get a new one and pass.
func TestForwardID(t *testing.T) {
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	defer s.Shutdown()
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	st, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "E", Subjects: []string{"e"}})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := js.Publish(ctx, "e", []byte("the same signed event")); err != nil {
			t.Fatal(err)
		}
	}
	cons, err := st.CreateConsumer(ctx, jetstream.ConsumerConfig{Durable: "v", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	fetch := func() jetstream.Msg {
		b, err := cons.Fetch(1, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for m := range b.Messages() {
			return m
		}
		t.Fatal("nothing fetched")
		return nil
	}
	id := func(m jetstream.Msg) string {
		md, err := m.Metadata()
		if err != nil {
			t.Fatal(err)
		}
		return forwardID(m.Data(), md)
	}
	m1, m2 := fetch(), fetch()
	id1 := id(m1)
	if second := id(m2); second == id1 {
		t.Fatalf("the resent bytes' forward id %q equals the first's", second)
	}
	if err := m1.Nak(); err != nil {
		t.Fatal(err)
	}
	nc.Flush()
	if again := id(fetch()); again != id1 {
		t.Fatalf("a redelivery's forward id %q, first %q: want the same", again, id1)
	}
}
