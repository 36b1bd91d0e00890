package clearing

import (
	"context"
	"log/slog"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/faregate/faregate/fare"
)

// failingBatch delivers its messages, then fails (the consumer's leader
// moved: a 409 after some of a pull's messages).
type failingBatch struct {
	ch  chan jetstream.Msg
	err error
}

func (b failingBatch) Messages() <-chan jetstream.Msg { return b.ch }
func (b failingBatch) Error() error                   { return b.err }

type deliveredMsg struct {
	jetstream.Msg
	seq int
}

// failingConsumer answers every pull with n messages and then err.
type failingConsumer struct {
	jetstream.Consumer
	n   int
	err error
}

func (c *failingConsumer) FetchNoWait(int) (jetstream.MessageBatch, error) {
	ch := make(chan jetstream.Msg, c.n)
	for i := range c.n {
		ch <- deliveredMsg{seq: i}
	}
	close(ch)
	return failingBatch{ch, c.err}, nil
}

func (c *failingConsumer) Fetch(int, ...jetstream.FetchOpt) (jetstream.MessageBatch, error) {
	return c.FetchNoWait(0)
}

// TestFetchKeepsWhatWasDelivered: messages a pull delivered before it
// failed go on to be applied. Dropped, the next applied batch's ack (ack
// all, up to its own) removed them from the stream unapplied (an outside
// review); a failure that delivered nothing delivers nothing.
func TestFetchKeepsWhatWasDelivered(t *testing.T) {
	for _, tc := range []struct {
		name string
		n    int
		err  error
	}{
		{"two, then the leader moved", 2, jetstream.ErrConsumerLeadershipChanged},
		{"five, then the server shut down", 5, jetstream.ErrServerShutdown},
		{"none, and a failure", 0, jetstream.ErrConsumerDeleted},
		{"three, no failure", 3, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &Clearing{cons: &failingConsumer{n: tc.n, err: tc.err}, fetchLog: fare.NewTally(slog.New(slog.DiscardHandler), "fetch")}
			c.cfg.FetchBatch = 10
			if got := c.fetchDelivered(context.Background(), nil); len(got) != tc.n {
				t.Errorf("%d messages handed on, want the %d delivered", len(got), tc.n)
			}
		})
	}
}
