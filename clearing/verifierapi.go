package clearing

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/faregate/faregate/fare"
)

// A verifier reads its partition's consumer's information once, when it
// binds to it (jetstream's Consumer). nats-server queues every such
// request of the whole server in one queue, and empties it when full,
// clearing's own included: an outside re-check's flood of them from one
// partition's verifier left a gate of another partition without its deny
// list (its feed's consumer could not be made) and clearing not ready. So
// clearing's account lends no JetStream information request: the
// verifiers' arrive on verifierInfoSubject(p), which clearing answers from
// a copy it reads from JetStream at most once a second a partition, and at
// most verifierInfoAnswers times a second a partition; the rest of a flood
// is dropped here. (Fetches are lent as they are: passed on by clearing
// with the verifier's reply subject, their answers did not come back.)

// verifierInfoPrefix begins the subjects on which clearing answers the
// verifiers' requests for their partition's consumer information.
const verifierInfoPrefix = "faregate.verifierinfo"

// verifierInfoSubject is where partition p's verifiers' consumer
// information requests arrive in clearing's account.
func verifierInfoSubject(p int) string { return verifierInfoPrefix + "." + strconv.Itoa(p) }

const (
	// verifierInfoAnswers bounds the answers a second to one partition's
	// verifiers: a verifier asks once at its start.
	verifierInfoAnswers = 20
	// verifierInfoFresh is how long a copy of a consumer's information is
	// given out before it is read again.
	verifierInfoFresh = time.Second
)

// verifierInfo answers the verifiers' consumer information requests.
type verifierInfo struct {
	nc         *nats.Conn
	partitions int
	mu         sync.Mutex
	copies     map[int]verifierInfoCopy
	answered   map[int][2]int64 // partition: the second and the answers in it
}

type verifierInfoCopy struct {
	at   time.Time
	body []byte
}

// consumerNotFound is JetStream's answer for a consumer it does not have,
// as the verifier's client reads it (jetstream.ErrConsumerNotFound).
var consumerNotFound = []byte(`{"type":"io.nats.jetstream.api.v1.consumer_info_response","error":{"code":404,"err_code":10014,"description":"consumer not found"}}`)

// answer answers one request (m.Reply leads back to the verifier).
func (vi *verifierInfo) answer(m *nats.Msg) {
	p, err := strconv.Atoi(strings.TrimPrefix(m.Subject, verifierInfoPrefix+"."))
	if err != nil || m.Reply == "" || !vi.allow(p, time.Now()) {
		return
	}
	if p < 0 || p >= vi.partitions {
		_ = m.Respond(consumerNotFound)
		return
	}
	body, err := vi.copyOf(p, time.Now())
	if err != nil {
		return // the verifier's request times out, and it asks again
	}
	_ = m.Respond(body)
}

// allow counts an answer to partition p's verifiers in the current
// second, false past verifierInfoAnswers.
func (vi *verifierInfo) allow(p int, now time.Time) bool {
	vi.mu.Lock()
	defer vi.mu.Unlock()
	sec := now.Unix()
	a := vi.answered[p]
	if a[0] != sec {
		a = [2]int64{sec, 0}
	}
	a[1]++
	vi.answered[p] = a
	return a[1] <= verifierInfoAnswers
}

// copyOf is partition p's consumer's information as JetStream answered it,
// read again when the copy is older than verifierInfoFresh.
func (vi *verifierInfo) copyOf(p int, now time.Time) ([]byte, error) {
	vi.mu.Lock()
	c, ok := vi.copies[p]
	vi.mu.Unlock()
	if ok && now.Sub(c.at) < verifierInfoFresh {
		return c.body, nil
	}
	r, err := vi.nc.Request("$JS.API.CONSUMER.INFO."+fare.EventStream+"."+VerifierConsumer(p), nil, 2*time.Second)
	if err != nil {
		return nil, fmt.Errorf("consumer %s: %w", VerifierConsumer(p), err)
	}
	vi.mu.Lock()
	vi.copies[p] = verifierInfoCopy{at: now, body: r.Data}
	vi.mu.Unlock()
	return r.Data, nil
}

// serveVerifierAPI subscribes clearing's connection to the verifiers'
// consumer information requests of every partition.
func (c *Clearing) serveVerifierAPI() error {
	if c.cfg.VerifierPartitions == 0 {
		return nil
	}
	vi := &verifierInfo{nc: c.nc, partitions: c.cfg.VerifierPartitions, copies: map[int]verifierInfoCopy{}, answered: map[int][2]int64{}}
	sub, err := c.nc.Subscribe(verifierInfoPrefix+".*", vi.answer)
	if err != nil {
		return fmt.Errorf("subscribe the verifiers' consumer information requests: %w", err)
	}
	// A flood is dropped here rather than queued.
	_ = sub.SetPendingLimits(1024, 4<<20)
	return nil
}
