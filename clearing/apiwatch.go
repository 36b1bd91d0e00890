package clearing

import (
	"encoding/json"
	"sync"
	"time"
)

// A terminal asks clearing for its gate feeds (gatefeeds.go) when it
// starts or reconnects: three requests. Each costs clearing a consumer
// made and deleted, and NATS has no per-user rate limit, so clearing
// counts them: a terminal far over what a gate asks is named in the log
// and counted, for its operator to revoke its key, and the embedded server
// refuses it for a while (Config.FlooderBar), disconnecting it. The same
// count still reads the server's API audit advisories: a user of the
// terminals' account can make no JetStream API request (it has no
// JetStream and is lent none), but one that could (a verifier's, an
// external server configured by hand) is named as well. (When terminals
// were lent the API, an outside red team's four connections grew clearing
// by 130 MB a second with its answers.)

// apiBudget is how many requests one terminal may make in apiWindow
// before it is named: a gate asks for three feeds when it starts or
// reconnects.
const (
	apiBudget = 200
	apiWindow = 10 * time.Second
)

// apiWatch counts each terminal's JetStream API requests per window.
type apiWatch struct {
	mu      sync.Mutex
	start   time.Time
	counts  map[string]int       // NATS user -> requests in this window
	flagged map[string]uint64    // terminal -> windows it went over budget
	bars    map[string]time.Time // terminal -> refused by the embedded server until
}

// maxFlooderBar bounds a repeated flooder's bar: its key's revocation is
// its operator's to make.
const maxFlooderBar = time.Hour

// bar refuses terminal until now plus base, doubled for each time it was
// flagged before, at most maxFlooderBar; it returns the bar's end.
func (w *apiWatch) bar(terminal string, now time.Time, base time.Duration) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	d := base
	for i := uint64(1); i < w.flagged[terminal] && d < maxFlooderBar; i++ {
		d *= 2
	}
	if w.bars == nil {
		w.bars = map[string]time.Time{}
	}
	w.bars[terminal] = now.Add(min(d, maxFlooderBar))
	return w.bars[terminal]
}

// barred is the set of terminals refused at now; bars that have ended go.
func (w *apiWatch) barred(now time.Time) map[string]bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string]bool{}
	for t, until := range w.bars {
		if now.Before(until) {
			out[t] = true
		} else {
			delete(w.bars, t)
		}
	}
	return out
}

// note counts one request of user at now and reports whether the user has
// just gone over its budget in this window (once per window).
func (w *apiWatch) note(user string, now time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if now.Sub(w.start) >= apiWindow || w.counts == nil {
		w.start, w.counts = now, map[string]int{}
	}
	w.counts[user]++
	return w.counts[user] == apiBudget+1
}

// flag records that terminal went over its budget.
func (w *apiWatch) flag(terminal string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.flagged == nil {
		w.flagged = map[string]uint64{}
	}
	w.flagged[terminal]++
}

// flooders is a copy of the terminals flagged so far, with how many times.
func (w *apiWatch) flooders() map[string]uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string]uint64, len(w.flagged))
	for k, v := range w.flagged {
		out[k] = v
	}
	return out
}

// watchAPIRate counts an API audit advisory against its caller and names a
// terminal going over budget.
func (c *Clearing) watchAPIRate(data []byte) {
	var a struct {
		Client struct {
			User string `json:"user"`
		} `json:"client"`
	}
	if json.Unmarshal(data, &a) != nil || a.Client.User == "" || a.Client.User == c.natsID.public {
		return
	}
	if !c.apiCalls.note(a.Client.User, time.Now()) {
		return
	}
	term := c.terminalOfNATSUser(a.Client.User)
	if term == "" {
		return // a verifier, or a user the registry does not know
	}
	c.flagFlooder(term, "JetStream API requests")
}

// flagFlooder names terminal, which went over its budget of what (apiWatch
// counts both its JetStream API requests, which its account cannot make
// since gate feeds, and its gate feed requests), and has the embedded
// server refuse it for a while (Config.FlooderBar).
func (c *Clearing) flagFlooder(term, what string) {
	c.apiCalls.flag(term)
	if c.embedded == nil || c.cfg.FlooderBar < 0 {
		c.log.Error("a terminal is flooding clearing with "+what+"; revoke its key if this is no restart storm",
			"terminal", term, "requests_over", apiBudget, "window", apiWindow.String())
		return
	}
	// Refused from the registry's next read (within Config.RegistryPoll),
	// which reloads the server's users without it.
	until := c.apiCalls.bar(term, time.Now(), c.cfg.FlooderBar)
	c.log.Error("a terminal is flooding clearing with "+what+": the NATS server refuses it for a while; revoke its key if this is no restart storm",
		"terminal", term, "requests_over", apiBudget, "window", apiWindow.String(), "refused_until", until.UTC().Format(time.RFC3339))
}
