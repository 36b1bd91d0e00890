package clearing

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/time/rate"

	"github.com/faregate/faregate/fare"
)

// consumerCreate is one consumer creation reported by JetStream's API
// audit advisory ($JS.EVENT.ADVISORY.API), which the gate-list and face
// bucket guards read to delete consumers terminals may not have.
type consumerCreate struct {
	user, stream, name string
	cfg                watchConfig
}

// watchConfig is what the guards check of a consumer's configuration.
type watchConfig struct {
	Durable           string        `json:"durable_name"`
	DeliverSubject    string        `json:"deliver_subject"`
	AckPolicy         string        `json:"ack_policy"`
	FilterSubject     string        `json:"filter_subject"`
	InactiveThreshold time.Duration `json:"inactive_threshold"`
}

// parseConsumerCreate reads an audit advisory; ok is false unless it
// reports a consumer the server made. The configuration comes from the
// request, or, when the server left the request out (on a cluster, a
// request forwarded to the stream's leader is audited with its response
// only), from the response's consumer info: without this fallback every
// terminal's watch on a cluster looked like one delivering nowhere, and was
// deleted again and again.
func parseConsumerCreate(data []byte) (cc consumerCreate, ok bool) {
	var a struct {
		Client struct {
			User string `json:"user"`
		} `json:"client"`
		Subject  string `json:"subject"`
		Request  string `json:"request"`
		Response string `json:"response"`
	}
	// $JS.API.CONSUMER.CREATE.<stream>.<name>[.<filter>]
	if json.Unmarshal(data, &a) != nil || !strings.HasPrefix(a.Subject, "$JS.API.CONSUMER.CREATE.") {
		return cc, false
	}
	tok := strings.Split(a.Subject, ".")
	if len(tok) < 6 {
		return cc, false
	}
	var resp struct {
		Error  *struct{}   `json:"error"`
		Config watchConfig `json:"config"`
	}
	respOK := json.Unmarshal([]byte(a.Response), &resp) == nil
	if respOK && resp.Error != nil {
		return cc, false // the server refused it: there is no consumer
	}
	cc = consumerCreate{user: a.Client.User, stream: tok[4], name: tok[5]}
	var req struct {
		Config *watchConfig `json:"config"`
	}
	if json.Unmarshal([]byte(a.Request), &req) == nil && req.Config != nil {
		cc.cfg = *req.Config
	} else if respOK {
		cc.cfg = resp.Config
	}
	return cc, true
}

// watchViolation says why a consumer terminal term made is not a gate's
// watch (ephemeral, unacknowledged, short-lived, delivering to the
// terminal's own inbox, and, when filter is not empty, filtered on it), or
// "" when it is one.
func watchViolation(term string, cfg watchConfig, filter string) string {
	switch {
	case term == "":
		return "made by a NATS user that is no terminal of the registry"
	case filter != "" && cfg.FilterSubject != filter:
		return fmt.Sprintf("filter %q, not the terminal's own keys", cfg.FilterSubject)
	case !strings.HasPrefix(cfg.DeliverSubject, fare.TerminalInboxPrefix(term)+"."):
		return fmt.Sprintf("delivers to %q, outside the terminal's inbox", cfg.DeliverSubject)
	case cfg.Durable != "":
		return "durable"
	case cfg.AckPolicy != "none":
		return fmt.Sprintf("ack policy %q", cfg.AckPolicy)
	case cfg.InactiveThreshold > maxWatchInactive:
		return fmt.Sprintf("inactive threshold %s", cfg.InactiveThreshold)
	}
	return ""
}

// clearingInboxPrefix is the inbox prefix of clearing's own NATS
// connection: the consumers clearing makes on its buckets (to watch them)
// deliver under it, which the sweep recognises. No terminal may subscribe
// there.
const clearingInboxPrefix = "_CLEARING_INBOX"

// consumerSweepEvery is how often clearing lists the consumers on the
// buckets gates watch. The API audit advisories the guards react to are core
// NATS messages: one sent while clearing's connection is down (a NATS node
// restarting, a reconnect under load) is never seen, so the sweep catches
// what they missed.
const consumerSweepEvery = 5 * time.Second

// sweepConsumers runs sweepOnce every consumerSweepEvery until ctx ends.
func (c *Clearing) sweepConsumers(ctx context.Context) {
	t := time.NewTicker(consumerSweepEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.sweepOnce(ctx)
		}
	}
}

// sweepOnce deletes every consumer on the gate-list and face buckets that is
// neither clearing's own nor a registered terminal's watch by the guards'
// rules (the terminal is the one whose inbox it delivers to). It returns
// how many it deleted.
func (c *Clearing) sweepOnce(ctx context.Context) int {
	streams := []string{"KV_" + fare.DenyBucket, "KV_" + fare.EnrolBucket}
	if c.faces != nil {
		streams = append(streams, fare.FaceStream)
	}
	deleted := 0
	for _, name := range streams {
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		st, err := c.js.Stream(lctx, name)
		if err != nil {
			cancel()
			continue
		}
		var bad []string
		var whys []string
		list := st.ListConsumers(lctx)
		for info := range list.Info() {
			var cfg watchConfig
			if raw, err := json.Marshal(info.Config); err != nil || json.Unmarshal(raw, &cfg) != nil {
				continue
			}
			if strings.HasPrefix(cfg.DeliverSubject, clearingInboxPrefix+".") {
				continue
			}
			term := ""
			if rest, ok := strings.CutPrefix(cfg.DeliverSubject, "_INBOX."); ok {
				id, _, _ := strings.Cut(rest, ".")
				if t, ok := c.terminals.Lookup(id); ok && !t.Revoked() {
					term = id
				}
			}
			filter := ""
			if name == fare.FaceStream && term != "" {
				filter = fare.FaceWatchFilter(term)
			}
			if why := watchViolation(term, cfg, filter); why != "" {
				bad, whys = append(bad, info.Name), append(whys, why)
			}
		}
		cancel()
		for i, cons := range bad {
			dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := c.js.DeleteConsumer(dctx, name, cons)
			cancel()
			if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
				c.log.Error("consumer sweep: not deleted", "stream", name, "consumer", cons, "err", err)
				continue
			}
			deleted++
			detail := fmt.Sprintf("consumer %q on %s: %s; deleted by the sweep", cons, name, whys[i])
			if name == fare.FaceStream {
				c.faces.deleted.Add(1)
				c.faces.tally.Add("consumer-deleted", detail)
			} else {
				c.deny.deleted.Add(1)
				c.deny.tally.Add("consumer-deleted", detail)
			}
		}
	}
	return deleted
}

// Watch budget: a gate makes one watch consumer on each bucket it follows
// when it starts, and again when its connection or a watch resets. One
// that makes them faster than that (a misused key) could take every
// consumer slot the server allows a stream, and a gate starting meanwhile
// would decide from an empty list: its new watches beyond the budget are
// deleted at once, like a watch that breaks the rules.
const (
	// watchBurst is how many watches a terminal may make at once: the
	// three buckets' (deny list, enrolments, faces), four times over.
	watchBurst = 12
	// watchRefill is how often a terminal earns one more.
	watchRefill = 5 * time.Second
)

// watchBudget is each terminal's budget of watch consumers.
type watchBudget struct {
	mu  sync.Mutex
	per map[string]*rate.Limiter
}

// allow spends one of term's watches, reporting false when none is left.
func (b *watchBudget) allow(term string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	l, ok := b.per[term]
	if !ok {
		if b.per == nil {
			b.per = make(map[string]*rate.Limiter)
		}
		l = rate.NewLimiter(rate.Every(watchRefill), watchBurst)
		b.per[term] = l
	}
	return l.Allow()
}

// overBudget is the guards' reason for a watch over its terminal's budget.
func overBudget() string {
	return fmt.Sprintf("over the terminal's budget of watch consumers (%d at once, then one per %s; a gate makes one per bucket when it starts or a watch resets)", watchBurst, watchRefill)
}
