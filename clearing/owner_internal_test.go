package clearing

import (
	"errors"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestRaced: a renewal of the owner record that lost a compare-and-set
// (another write came first: a JetStream reply a terminal aimed at the
// record) is no failure of the store; a store that answers nothing, or an
// error of another kind, is.
func TestRaced(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{&jetstream.APIError{Code: 400, ErrorCode: jetstream.JSErrCodeStreamWrongLastSequence, Description: "wrong last sequence: 7"}, true},
		{fmt.Errorf("nats: %w", &jetstream.APIError{Code: 400, ErrorCode: jetstream.JSErrCodeStreamWrongLastSequenceConstant}), true},
		{fmt.Errorf("update: %w", jetstream.ErrKeyExists), true},
		{&jetstream.APIError{Code: 503, ErrorCode: jetstream.JSErrCodeJetStreamNotEnabled}, false},
		{nats.ErrTimeout, false},
		{errors.New("too many open files"), false},
	} {
		if got := raced(tc.err); got != tc.want {
			t.Errorf("raced(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
