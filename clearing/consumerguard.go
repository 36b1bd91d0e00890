package clearing

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

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
		type watch struct {
			name    string
			created time.Time
		}
		held := make(map[string][]watch) // terminal -> its watches that follow the rules
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
			} else {
				held[term] = append(held[term], watch{info.Name, info.Created})
			}
		}
		cancel()
		for i, cons := range bad {
			deleted += c.dropWatches(ctx, name, []string{cons}, whys[i]+" (found by the sweep)")
		}
		found := make(map[string][]string, len(held))
		for term, ws := range held {
			slices.SortFunc(ws, func(a, b watch) int { return a.created.Compare(b.created) })
			names := make([]string, len(ws))
			for i, w := range ws {
				names[i] = w.name
			}
			if n := len(names) - maxLiveWatches; n > 0 {
				deleted += c.dropWatches(ctx, name, names[:n], overCap(term)+" (found by the sweep)")
				names = names[n:]
			}
			found[term] = names
		}
		c.watches.reset(name, found)
	}
	return deleted
}

// Live watches: a gate follows each bucket with one watch consumer, and
// makes another when it restarts or its connection or watch resets (the
// old one lingers until its inactive threshold). One that holds many (a
// misused key keeps interest in each, so none expires) could take every
// consumer slot the server allows a stream, and a gate starting meanwhile
// would decide from an empty list. So each terminal may hold at most
// maxLiveWatches on each bucket: beyond it, its oldest are deleted (the
// newest is the one a gate reads), on each creation clearing hears of and
// by the sweep.
const maxLiveWatches = 4

// liveWatches is the watches each terminal holds on each bucket, oldest
// first, as clearing last heard or swept them.
type liveWatches struct {
	mu  sync.Mutex
	per map[[2]string][]string // stream, terminal -> consumer names
}

// add notes name as term's newest watch on stream and returns the oldest
// ones beyond the cap, forgotten here, for the caller to delete.
func (l *liveWatches) add(stream, term, name string) (excess []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.per == nil {
		l.per = make(map[[2]string][]string)
	}
	k := [2]string{stream, term}
	names := append(l.per[k], name)
	if n := len(names) - maxLiveWatches; n > 0 {
		excess = slices.Clone(names[:n])
		names = slices.Delete(names, 0, n)
	}
	l.per[k] = names
	return excess
}

// reset replaces what is known of stream's watches with what the sweep
// found there (each terminal's names, oldest first).
func (l *liveWatches) reset(stream string, found map[string][]string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.per == nil {
		l.per = make(map[[2]string][]string)
	}
	for k := range l.per {
		if k[0] == stream {
			delete(l.per, k)
		}
	}
	for term, names := range found {
		l.per[[2]string{stream, term}] = names
	}
}

// overCap is the guards' reason for a watch deleted for a newer one.
func overCap(term string) string {
	return fmt.Sprintf("terminal %q holds more than %d watches of this bucket (a gate reads its newest; a misused key could fill the bucket's consumer slots): its oldest deleted", term, maxLiveWatches)
}

// dropWatches deletes stream's consumers names, each refused for why, and
// counts them as its bucket's guard does.
func (c *Clearing) dropWatches(ctx context.Context, stream string, names []string, why string) int {
	deleted := 0
	for _, cons := range names {
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := c.js.DeleteConsumer(dctx, stream, cons)
		cancel()
		if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			c.log.Error("consumer not deleted", "stream", stream, "consumer", cons, "err", err)
			continue
		}
		deleted++
		detail := fmt.Sprintf("consumer %q on %s: %s; deleted", cons, stream, why)
		if stream == fare.FaceStream {
			c.faces.deleted.Add(1)
			c.faces.tally.Add("consumer-deleted", detail)
		} else {
			c.deny.deleted.Add(1)
			c.deny.tally.Add("consumer-deleted", detail)
		}
	}
	return deleted
}
