// Package chaos runs a chaos soak of Faregate with real processes: three
// nats-server processes routed into one JetStream cluster, one `faregate
// clearing` process on that cluster, with VerifierPartitions one `faregate
// clearing verifier` process per partition of the terminals, its chain (a
// `faregate chaos chain-node` process reached over JSON-RPC when
// RestartChain is in the rotation, else embedded in clearing), and a few
// `faregate terminal` processes tapping through TCP proxies the harness
// owns. On a schedule it SIGKILLs clearing, the NATS node leading the event
// stream, the chain node, verifiers and terminals, and cuts terminals off
// from NATS; at the end it drains every outbox, stops clearing and checks,
// from the stores and the chain rather than from counters, that every
// accepted tap was applied exactly once, that `faregate ledger audit` is
// clean and that every verifier partition carried taps and was left empty.
//
// Run is the entry point; the faregate and nats-server binaries are given
// by path (the package never builds anything and imports no command).
package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/faregate/faregate/clearing"
)

// FaultKind names a kind of fault the harness injects.
type FaultKind string

// The fault kinds.
const (
	// KillClearing SIGKILLs the clearing process and restarts it after
	// Outage (its chain node dies with it when the chain is embedded, that
	// is when RestartChain is not in the rotation).
	KillClearing FaultKind = "kill-clearing"
	// KillStreamLeader SIGKILLs the nats-server node that leads the
	// FAREGATE_EVENTS stream (with verifier partitions, every other time
	// the one leading FAREGATE_VERIFIED, which clearing reads) and
	// restarts it after NATSOutage.
	KillStreamLeader FaultKind = "kill-nats-stream-leader"
	// KillTerminal SIGKILLs a terminal and restarts it on the same data
	// directory after Outage: its outbox must resend what is unconfirmed.
	KillTerminal FaultKind = "kill-terminal"
	// CutTerminal drops a terminal's NATS connections and refuses new ones
	// for CutOff; the terminal keeps taking taps into its outbox.
	CutTerminal FaultKind = "cut-terminal"
	// RestartChain SIGKILLs the chain node and restarts it after Outage.
	// With this kind in the rotation the chain runs as a process of its own
	// (`faregate chaos chain-node`) and clearing reaches it over JSON-RPC
	// (--eth-rpc); clearing keeps applying taps while it is down and must
	// anchor every batch sealed meanwhile once it is back.
	RestartChain FaultKind = "restart-chain"
	// KillVerifier SIGKILLs the verifier process of one partition (each
	// partition in turn) and restarts it after Outage: what it had fetched
	// and not acked is delivered again after the consumer's ack wait (5 s).
	// Only with Config.VerifierPartitions > 0.
	KillVerifier FaultKind = "kill-verifier"
)

// OutageOf is how long a fault of kind k keeps its part down (Outage,
// NATSOutage or CutOff; the chain at least two settlement periods, so
// that clearing seals a batch it cannot anchor meanwhile). A soak whose
// StallLimit is not above it fails every such fault as a stall.
func (c Config) OutageOf(k FaultKind) time.Duration {
	switch k {
	case KillStreamLeader:
		return c.NATSOutage
	case CutTerminal:
		return c.CutOff
	case RestartChain:
		return max(c.Outage, 2*c.Period+time.Second)
	default:
		return c.Outage
	}
}

// DefaultKinds is the rotation of fault kinds when Config.Kinds is empty
// and there are no verifier partitions; with them KillVerifier comes last
// (see DefaultKindsFor).
var DefaultKinds = []FaultKind{KillClearing, KillStreamLeader, KillTerminal, CutTerminal, RestartChain}

// AllKinds are every fault kind the harness knows.
var AllKinds = []FaultKind{KillClearing, KillStreamLeader, KillTerminal, CutTerminal, RestartChain, KillVerifier}

// DefaultKindsFor is the rotation when Config.Kinds is empty: DefaultKinds,
// and KillVerifier when there are verifier partitions.
func DefaultKindsFor(verifierPartitions int) []FaultKind {
	if verifierPartitions > 0 {
		return append(slices.Clone(DefaultKinds), KillVerifier)
	}
	return slices.Clone(DefaultKinds)
}

// NoFaults, as Config.Faults, runs the soak without faults (0 is the
// default number).
const NoFaults = -1

// MinPeriod is the shortest settlement period a soak runs clearing with:
// shorter, clearing seals and anchors so often that the soak measures
// little else (and the end waits for two periods).
const MinPeriod = 100 * time.Millisecond

// MaxTerminals bounds Config.Terminals: each terminal is a process with
// three proxies listening, and a few thousand of them would exhaust the
// machine's processes and ports long before they measured anything.
const MaxTerminals = 1000

// Config describes a soak. Faregate, NATSServer and Dir are required.
type Config struct {
	// Faregate is the faregate binary, NATSServer the nats-server binary
	// (make nats-server puts it in bin/).
	Faregate, NATSServer string
	// Env is the children's environment (default os.Environ()).
	Env []string
	// Dir holds every process's data and logs (Dir/logs); it should be
	// empty or new.
	Dir string
	// Terminals is the number of terminal processes (default 4, at most
	// MaxTerminals), split between two operators.
	Terminals int
	// VerifierPartitions, when positive, runs clearing with
	// --verifier-partitions N and one `faregate clearing verifier` process
	// per partition, each with its own NATS user (`faregate clearing
	// verifier-key`). NATS's partition hash must put at least one terminal
	// in every partition (Run refuses otherwise). 0: clearing verifies.
	VerifierPartitions int
	// Taps is the number of taps to take at least (default 3000). Taps
	// keep coming until the fault schedule is done, so a run whose faults
	// outlast its taps takes more.
	Taps int
	// Rate is each terminal's tap rate per second (default 10).
	Rate float64
	// Faults is the number of faults (default 10; NoFaults for none: a
	// baseline soak to compare stalls and throughput with), Kinds their rotation
	// (default DefaultKindsFor(VerifierPartitions)), FaultInterval the quiet time between one
	// fault's recovery and the next fault (default 3s).
	Faults        int
	Kinds         []FaultKind
	FaultInterval time.Duration
	// Outage is how long a killed clearing, chain node, verifier or
	// terminal stays down (default 1s; a chain node two settlement
	// periods and a second at least, so that a batch is sealed while it
	// is down), NATSOutage a killed NATS node (default 3s), CutOff how
	// long a terminal is cut off (default 5s).
	Outage, NATSOutage, CutOff time.Duration
	// Period is clearing's settlement period (default 2s, at least
	// MinPeriod). A negative duration here or above is an error.
	Period time.Duration
	// FirstPort and LastPort, when set, bound every TCP port the soak
	// listens on (the NATS nodes' client and route ports, clearing's API,
	// the chain's JSON-RPC and the terminals' proxies: PortsNeeded of
	// them) for a host that firewalls or assigns ranges; 0: free loopback
	// ports the kernel picks.
	FirstPort, LastPort int
	// StallLimit fails the run when the system makes no progress this long
	// after a fault (default 2m), DrainLimit when the outboxes have not
	// drained this long after the taps stopped (default 3m).
	StallLimit, DrainLimit time.Duration
	// Logf, if set, receives one line per step and fault.
	Logf func(format string, args ...any)
}

func (c *Config) defaults() error {
	if c.Faregate == "" || c.NATSServer == "" || c.Dir == "" {
		return errors.New("chaos: Config.Faregate, NATSServer and Dir are required")
	}
	for _, b := range []string{c.Faregate, c.NATSServer} {
		if _, err := os.Stat(b); err != nil {
			return fmt.Errorf("chaos: %w (make build; make nats-server)", err)
		}
	}
	if c.Env == nil {
		c.Env = os.Environ()
	}
	set := func(p *int, v int) {
		if *p <= 0 {
			*p = v
		}
	}
	// 0 is the default; a negative duration is a mistake, not a wish
	// for the default.
	var bad []string
	setD := func(name string, p *time.Duration, v time.Duration) {
		if *p < 0 {
			bad = append(bad, fmt.Sprintf("%s %s", name, *p))
		}
		if *p <= 0 {
			*p = v
		}
	}
	set(&c.Terminals, 4)
	set(&c.Taps, 3000)
	if c.Faults == NoFaults {
		c.Faults = 0
	} else {
		set(&c.Faults, 10)
	}
	if c.Rate <= 0 {
		c.Rate = 10
	}
	if c.VerifierPartitions < 0 || c.VerifierPartitions > clearing.MaxVerifierPartitions {
		return fmt.Errorf("chaos: %d verifier partitions, want 0 to %d", c.VerifierPartitions, clearing.MaxVerifierPartitions)
	}
	if len(c.Kinds) == 0 {
		c.Kinds = DefaultKindsFor(c.VerifierPartitions)
	}
	for _, k := range c.Kinds {
		if !slices.Contains(AllKinds, k) {
			return fmt.Errorf("chaos: unknown fault kind %q", k)
		}
		if k == KillVerifier && c.VerifierPartitions == 0 {
			return fmt.Errorf("chaos: fault kind %s needs VerifierPartitions > 0", k)
		}
	}
	if err := CheckPortRange(c.FirstPort, c.LastPort, c.Terminals); err != nil {
		return fmt.Errorf("chaos: %w", err)
	}
	if err := CheckPartitions(c.Terminals, c.VerifierPartitions); err != nil {
		return fmt.Errorf("chaos: %w", err)
	}
	setD("FaultInterval", &c.FaultInterval, 3*time.Second)
	setD("Outage", &c.Outage, time.Second)
	setD("NATSOutage", &c.NATSOutage, 3*time.Second)
	setD("CutOff", &c.CutOff, 5*time.Second)
	setD("Period", &c.Period, 2*time.Second)
	setD("StallLimit", &c.StallLimit, 2*time.Minute)
	setD("DrainLimit", &c.DrainLimit, 3*time.Minute)
	if len(bad) > 0 {
		return fmt.Errorf("chaos: negative durations %s: want positive ones (0: the default)", strings.Join(bad, ", "))
	}
	if c.Period < MinPeriod {
		return fmt.Errorf("chaos: settlement period %s: want at least %s", c.Period, MinPeriod)
	}
	if c.Terminals > MaxTerminals {
		return fmt.Errorf("chaos: %d terminals: want at most %d", c.Terminals, MaxTerminals)
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
	return nil
}

// TerminalsPerPartition is how many of the soak's first `terminals`
// terminals NATS's partition hash puts in each of n verifier partitions.
func TerminalsPerPartition(terminals, n int) []int {
	if n <= 0 {
		return nil
	}
	carried := make([]int, n)
	for i := range terminals {
		carried[clearing.PartitionOf(operators[i%len(operators)].ID, terminalID(i), n)]++
	}
	return carried
}

// CheckPartitions says whether every one of n verifier partitions gets at
// least one of the soak's first `terminals` terminals. Over few terminals
// the hash is uneven: 4 terminals fall 2/2 into two partitions and 2/1/1
// into three, 12 fall 5/7 and 2/5/5, and 3 leave one of four empty.
func CheckPartitions(terminals, n int) error {
	for p, k := range TerminalsPerPartition(terminals, n) {
		if k == 0 {
			return fmt.Errorf("NATS's partition hash puts none of the %d terminals in verifier partition %d of %d (terminals per partition %v): choose another number of terminals or partitions",
				terminals, p, n, TerminalsPerPartition(terminals, n))
		}
	}
	return nil
}

// Fault is one injected fault in the fault log.
type Fault struct {
	// At is when the fault began, from the start of the soak.
	At     Duration  `json:"at"`
	Kind   FaultKind `json:"kind"`
	Target string    `json:"target"`
	// Down is how long the target was down or cut off.
	Down Duration `json:"down"`
	// Stall is how long after the fault began until the system made
	// progress again: every affected terminal had a tap it took after the
	// fault began applied by clearing (its watermark passed the sequence it
	// had reached at the fault). 0 when no progress was observed.
	Stall Duration `json:"stall"`
	// Unrecovered, when set, says why no progress was observed after the
	// fault: "interrupted", "stall limit" (StallLimit passed) or "failed"
	// (the fault's own step, a restart say, failed); Waited is how long
	// the harness waited for it. Such a fault counts in no LongestStall.
	Unrecovered string   `json:"unrecovered,omitempty"`
	Waited      Duration `json:"waited,omitempty"`
	// Note adds detail (the stream leader after the fault, for example).
	Note string `json:"note,omitempty"`
	// recovered is when progress was seen while the target was still
	// down (a cluster electing another leader, say): the stall ends there,
	// not at the restart.
	recovered time.Time
}

// Duration is a time.Duration that encodes as seconds in JSON.
type Duration time.Duration

// MarshalJSON writes the duration in seconds.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).Seconds())
}

func (d Duration) String() string { return time.Duration(d).Round(time.Millisecond).String() }

// TerminalReport is one terminal at the end of the soak, read from its
// store.
type TerminalReport struct {
	ID string `json:"id"`
	// Accepted is the highest sequence the terminal used: every tap it
	// took, as it numbers them 1, 2, 3 ... without gaps.
	Accepted uint64 `json:"accepted"`
	// Confirmed is clearing's watermark as the terminal stored it, Pending
	// what its outbox still holds (must be 0), Rejected its dead letters.
	Confirmed uint64 `json:"confirmed"`
	Pending   uint64 `json:"pending"`
	Rejected  int    `json:"rejected"`
	// Applied is the number of its events in clearing's store.
	Applied uint64 `json:"applied"`
	// Restarts counts the terminal's process starts after the first.
	Restarts int `json:"restarts"`
}

// PartitionReport is one verifier partition at the end of the soak.
type PartitionReport struct {
	Partition int `json:"partition"`
	// Terminals are the terminals NATS's partition hash puts here.
	Terminals []string `json:"terminals"`
	// Applied is the number of those terminals' events in clearing's store.
	Applied uint64 `json:"applied"`
	// Delivered is the verify-<p> consumer's delivery count from the NATS
	// API (redeliveries included); Pending what it had not delivered or
	// not had acked at the end (must be 0).
	Delivered uint64 `json:"delivered"`
	Pending   uint64 `json:"pending"`
	// Forwarded is what the partition's last verifier process forwarded to
	// the verified stream, from its "verifier stopped" line at the end (a
	// SIGKILLed one logs none); Starts counts its verifier processes.
	Forwarded uint64 `json:"forwarded_by_last_process"`
	Starts    int    `json:"starts"`
}

// Report is the soak's outcome. Lost, Twice, Rejected (every tap the soak
// takes is genuine) and OutboxPending must be 0 and AuditClean true;
// Problems lists every invariant that broke.
type Report struct {
	Terminals []TerminalReport `json:"terminals"`
	// Taps is the sum of the terminals' accepted taps; Applied the events
	// in clearing's store; Lost the accepted, not rejected taps clearing
	// does not hold; Twice the taps applied more than once (by event id or
	// by terminal and sequence).
	Taps          uint64 `json:"taps"`
	Applied       uint64 `json:"applied"`
	Lost          uint64 `json:"lost"`
	Twice         uint64 `json:"twice"`
	Rejected      uint64 `json:"rejected"`
	OutboxPending uint64 `json:"outbox_pending"`
	// VerifierPartitions is Config.VerifierPartitions, Partitions each one's
	// figures.
	VerifierPartitions int               `json:"verifier_partitions"`
	Partitions         []PartitionReport `json:"partitions,omitempty"`
	// Faults is the fault log; LongestStall the longest stall by kind,
	// of the faults after which progress was observed.
	Faults       []Fault                `json:"faults"`
	LongestStall map[FaultKind]Duration `json:"longest_stall"`
	// The audit (`faregate ledger audit --json`): batches sealed and on
	// chain, events re-hashed into their batches' roots, events in the
	// still open period, signatures verified, the journal's transfers and
	// imbalance (money: minor units, decimal, currency), and its mismatches.
	AuditClean        bool           `json:"audit_clean"`
	Batches           int            `json:"batches"`
	ChainBatches      uint64         `json:"chain_batches"`
	EventsInBatches   uint64         `json:"events_in_batches"`
	OpenEvents        uint64         `json:"open_events"`
	SignaturesChecked uint64         `json:"signatures_checked"`
	Transfers         int            `json:"journal_transfers"`
	Imbalance         clearing.Money `json:"journal_imbalance"`
	AuditMismatches   []string       `json:"audit_mismatches,omitempty"`
	// Duration is the soak's wall time, Drain how long the outboxes took
	// to drain after the taps stopped.
	Duration Duration `json:"duration"`
	Drain    Duration `json:"drain"`
	// Problems lists every broken invariant; empty for a good soak.
	Problems []string `json:"problems,omitempty"`
	// Stopped says why the soak stopped before its invariants were
	// checked (interrupted, a fault that did not recover, a process that
	// failed): the report is then partial, its fault log holds the faults
	// recovered until then, and nothing was checked.
	Stopped string `json:"stopped,omitempty"`
}

// MarshalJSON writes the report; a stopped soak's invariants (lost, twice,
// outbox_pending, audit_clean) and the store's and audit's figures
// (applied, batches, ...) as null: they were not checked, and a script
// testing lost == 0 must not pass a soak that checked nothing, nor read
// applied 0 for taps that were applied (an outside test). Taps is then
// what the terminals took until the soak stopped.
func (r Report) MarshalJSON() ([]byte, error) {
	type plain Report
	if r.Stopped == "" {
		return json.Marshal(plain(r))
	}
	return json.Marshal(struct {
		plain
		Lost              *uint64         `json:"lost"`
		Twice             *uint64         `json:"twice"`
		OutboxPending     *uint64         `json:"outbox_pending"`
		AuditClean        *bool           `json:"audit_clean"`
		Applied           *uint64         `json:"applied"`
		Batches           *int            `json:"batches"`
		ChainBatches      *uint64         `json:"chain_batches"`
		EventsInBatches   *uint64         `json:"events_in_batches"`
		OpenEvents        *uint64         `json:"open_events"`
		SignaturesChecked *uint64         `json:"signatures_checked"`
		Transfers         *int            `json:"journal_transfers"`
		Imbalance         *clearing.Money `json:"journal_imbalance"`
	}{plain: plain(r)})
}

// OK reports whether the soak ran to the end and every invariant held.
func (r *Report) OK() bool { return len(r.Problems) == 0 && r.Stopped == "" }

// Summary is the report in a few lines: the figures and the longest stall
// per fault kind.
func (r *Report) Summary() string {
	var b strings.Builder
	if r.Stopped != "" {
		fmt.Fprintf(&b, "STOPPED EARLY, invariants not checked, figures partial: %s\n", r.Stopped)
		fmt.Fprintf(&b, "taps %d taken by the terminals until then; applied, lost, twice, outbox pending and the audit not checked; %d faults in %s\n",
			r.Taps, len(r.Faults), r.Duration)
	} else {
		fmt.Fprintf(&b, "taps %d, applied %d, lost %d, twice %d, rejected %d, outbox pending %d; %d faults in %s (drain %s)\n",
			r.Taps, r.Applied, r.Lost, r.Twice, r.Rejected, r.OutboxPending, len(r.Faults), r.Duration, r.Drain)
		fmt.Fprintf(&b, "audit clean %v: %d batches (%d on chain), %d events in batches, %d open, %d signatures, journal %d transfers, imbalance %d (%s %s)\n",
			r.AuditClean, r.Batches, r.ChainBatches, r.EventsInBatches, r.OpenEvents, r.SignaturesChecked, r.Transfers, r.Imbalance.Minor, r.Imbalance.Decimal, r.Imbalance.Currency)
	}
	if r.VerifierPartitions > 0 {
		fmt.Fprintf(&b, "verifier partitions %d:\n", r.VerifierPartitions)
		for _, p := range r.Partitions {
			fmt.Fprintf(&b, "  partition %d: terminals %s, %d applied, %d delivered by verify-%d, last verifier forwarded %d, %d verifier starts, %d left\n",
				p.Partition, strings.Join(p.Terminals, ","), p.Applied, p.Delivered, p.Partition, p.Forwarded, p.Starts, p.Pending)
		}
	}
	// Every kind in the fault log, a fault without observed progress too
	// (it has no stall to count).
	n, unrecovered := map[FaultKind]int{}, map[FaultKind]int{}
	for _, f := range r.Faults {
		n[f.Kind]++
		if f.Unrecovered != "" {
			unrecovered[f.Kind]++
		}
	}
	for k := range r.LongestStall {
		n[k] += 0
	}
	kinds := make([]string, 0, len(n))
	for k := range n {
		kinds = append(kinds, string(k))
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		stall := "-"
		if st, ok := r.LongestStall[FaultKind(k)]; ok {
			stall = st.String()
		}
		fmt.Fprintf(&b, "  %-24s x%d  longest stall %s", k, n[FaultKind(k)], stall)
		if u := unrecovered[FaultKind(k)]; u > 0 {
			fmt.Fprintf(&b, " (%d with no progress observed)", u)
		}
		b.WriteString("\n")
	}
	for _, p := range r.Problems {
		fmt.Fprintf(&b, "PROBLEM %s\n", p)
	}
	return b.String()
}

// Run runs the soak described by cfg and returns its report. An error
// means the soak could not be run (no report), or stopped early: it was
// interrupted, or a fault did not recover within StallLimit (a partial
// report, Stopped saying why). A run that completed with broken invariants
// returns a report whose Problems say which (and a nil error). Every child
// process is stopped before Run returns.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	h := &harness{cfg: cfg, start: time.Now(), rep: &Report{LongestStall: map[FaultKind]Duration{}, VerifierPartitions: cfg.VerifierPartitions},
		termFaults: map[FaultKind]int{}}
	defer h.shutdown()
	defer func() { h.rep.Duration = Duration(time.Since(h.start)) }()
	if err := h.setup(ctx); err != nil {
		if ctx.Err() != nil {
			// A wait cut short by the interrupt is not what failed (an
			// outside test read "no meta leader after 60s" at 0.5 s).
			return nil, fmt.Errorf("interrupted while setting up the soak: %w", context.Cause(ctx))
		}
		return nil, err
	}
	if err := h.soak(ctx); err != nil {
		h.rep.Stopped, h.rep.Taps = err.Error(), h.taps()
		return h.rep, err
	}
	if err := h.finish(ctx); err != nil {
		h.rep.Stopped, h.rep.Taps = err.Error(), h.taps()
		return h.rep, err
	}
	return h.rep, nil
}

// harness owns every child process, proxy and goroutine of one soak.
type harness struct {
	cfg   Config
	start time.Time
	rep   *Report

	// The chain node, when the chain runs as a process of its own
	// (RestartChain in the rotation): its dir, JSON-RPC address, contract
	// and the clearing house's key file.
	chainProcess                          bool
	chain                                 *proc
	chainDir, chainAddr, contract, ethKey string
	embeddedChainAddr                     string // clearing's embedded chain's JSON-RPC, in FirstPort to LastPort

	dir, logs      string
	clearingDir    string
	registry       string
	seed           string
	confirmKey     string
	token          string
	httpAddr       string
	natsURLs       []string
	natsConfs      []string
	natsNames      []string
	nodes          []*proc
	clearing       *proc
	clearingStarts int
	termFaults     map[FaultKind]int // terminal faults by kind so far: the next one's target
	portMu         sync.Mutex
	nextPort       int         // the next of FirstPort to LastPort to try
	verifiers      []*verifier // one per partition
	verifierKills  int         // KillVerifier faults so far: the next one's partition
	leaderKills    int         // KillStreamLeader faults so far: with partitions, every other one the verified stream's
	terms          []*term
	feeders        sync.WaitGroup
	stopFeeding    chan struct{}
	http           *http.Client
	mu             sync.Mutex // guards nodes, clearing, chain and verifiers against shutdown
}

func (h *harness) logf(format string, args ...any) {
	h.cfg.Logf("%6.1fs "+format, append([]any{time.Since(h.start).Seconds()}, args...)...)
}

// shutdown stops whatever still runs: feeders, terminals, proxies,
// clearing, NATS nodes.
func (h *harness) shutdown() {
	if h.stopFeeding != nil {
		select {
		case <-h.stopFeeding:
		default:
			close(h.stopFeeding)
		}
	}
	for _, t := range h.terms {
		t.closeInput()
	}
	h.feeders.Wait()
	for _, t := range h.terms {
		if p := t.current(); p != nil {
			p.kill()
		}
		for _, px := range t.proxies {
			px.close()
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, v := range h.verifiers {
		if v.p != nil {
			v.p.kill()
		}
	}
	if h.clearing != nil {
		h.clearing.kill()
	}
	if h.chain != nil {
		h.chain.kill()
	}
	for _, n := range h.nodes {
		if n != nil {
			n.kill()
		}
	}
}

// PortsNeeded is how many ports a soak of terminals listens on: three
// NATS nodes' client and route ports, clearing's API, the chain's JSON-RPC
// and one proxy per terminal and NATS node.
func PortsNeeded(terminals int) int { return 3*2 + 2 + 3*terminals }

// CheckPortRange checks a soak's port range for terminals: none (both 0),
// or first to last within 1 to 65535 holding PortsNeeded of them.
func CheckPortRange(first, last, terminals int) error {
	switch {
	case first == 0 && last == 0:
		return nil // none given: the kernel picks
	case first < 1 || last > 65535 || first > last:
		return fmt.Errorf("ports %d-%d: want FIRST-LAST within 1-65535", first, last)
	case last-first+1 < PortsNeeded(terminals):
		return fmt.Errorf("ports %d-%d: %d ports, and %d terminals need %d (6 NATS, clearing's API, the chain's JSON-RPC, 3 proxies a terminal)", first, last, last-first+1, terminals, PortsNeeded(terminals))
	}
	return nil
}

// listen listens on a loopback port: the next free one of FirstPort to
// LastPort when they are set, else one the kernel picks.
func (h *harness) listen() (net.Listener, error) {
	if h.cfg.FirstPort == 0 {
		return net.Listen("tcp", "127.0.0.1:0")
	}
	h.portMu.Lock()
	defer h.portMu.Unlock()
	if h.nextPort < h.cfg.FirstPort {
		h.nextPort = h.cfg.FirstPort
	}
	var last error
	for ; h.nextPort <= h.cfg.LastPort; h.nextPort++ {
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", h.nextPort))
		if err == nil {
			h.nextPort++
			return ln, nil
		}
		last = err
	}
	return nil, fmt.Errorf("no free port left in %d-%d (last: %v)", h.cfg.FirstPort, h.cfg.LastPort, last)
}

// freePort returns a loopback port nothing listens on now (listen), for
// a child process to take.
func (h *harness) freePort() (int, error) {
	ln, err := h.listen()
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// waitUntil polls f every 100ms until it reports true, ctx ends or d
// passes.
func waitUntil(ctx context.Context, d time.Duration, f func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if f() {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// getJSON GETs path from clearing's API with the auditor token.
func (h *harness) getJSON(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+h.httpAddr+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+h.token)
	resp, err := h.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("GET %s: %s: %s", path, resp.Status, b)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// watermarks reads every terminal's watermark from clearing's API.
func (h *harness) watermarks(ctx context.Context) (map[string]uint64, error) {
	var out struct {
		Terminals []struct {
			ID        string `json:"id"`
			Watermark uint64 `json:"watermark"`
		} `json:"terminals"`
	}
	if err := h.getJSON(ctx, "/v1/terminals", &out); err != nil {
		return nil, err
	}
	m := make(map[string]uint64, len(out.Terminals))
	for _, t := range out.Terminals {
		m[t.ID] = t.Watermark
	}
	return m, nil
}

// addProblem records a broken invariant.
func (h *harness) addProblem(format string, args ...any) {
	p := fmt.Sprintf(format, args...)
	h.rep.Problems = append(h.rep.Problems, p)
	h.logf("PROBLEM %s", p)
}

// path joins elem under the run's directory.
func (h *harness) path(elem ...string) string {
	return filepath.Join(append([]string{h.dir}, elem...)...)
}
