package chaos

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/fare"
)

// verifier is the `faregate clearing verifier` process of one partition.
type verifier struct {
	partition int
	seed, pub string // its NATS user's seed file and public key
	terminals []string
	p         *proc // guarded by harness.mu
	starts    int
	forwarded uint64 // from the last process's "verifier stopped" line
}

// makeVerifierKeys makes each partition's NATS user seed with `faregate
// clearing verifier-key` (which prints the public key clearing and the
// NATS configuration admit) and says which terminals it carries.
func (h *harness) makeVerifierKeys(ctx context.Context) error {
	for p := range h.cfg.VerifierPartitions {
		v := &verifier{partition: p, seed: h.path("keys", fmt.Sprintf("verifier-%d.nk", p))}
		out, err := run(ctx, h.cfg.Env, h.cfg.Faregate, "clearing", "verifier-key", v.seed)
		if err != nil {
			return err
		}
		v.pub = strings.TrimSpace(string(out))
		if !strings.HasPrefix(v.pub, "U") {
			return fmt.Errorf("faregate clearing verifier-key printed %q, want a user public key", out)
		}
		for _, t := range h.terms {
			if clearing.PartitionOf(t.operator, t.id, h.cfg.VerifierPartitions) == p {
				v.terminals = append(v.terminals, t.id)
			}
		}
		h.verifiers = append(h.verifiers, v)
	}
	return nil
}

// verifierFlags are the flags clearing and `faregate nats config` take for
// the verifiers.
func (h *harness) verifierFlags() []string {
	if h.cfg.VerifierPartitions == 0 {
		return nil
	}
	args := []string{"--verifier-partitions", strconv.Itoa(h.cfg.VerifierPartitions)}
	for _, v := range h.verifiers {
		args = append(args, "--verifier-key", clearing.VerifierKey{Partition: v.partition, Key: v.pub}.String())
	}
	return args
}

// startVerifier starts partition v's verifier on the cluster, reading the
// registry from the chain node or from clearing's embedded chain, and
// waits until it runs. Clearing must be running: it makes the consumers
// (and, when it embeds the chain, serves the chain the verifier attaches to).
func (h *harness) startVerifier(ctx context.Context, v *verifier) error {
	args := []string{"clearing", "verifier", "--partition", strconv.Itoa(v.partition),
		"--nats", strings.Join(h.natsURLs, ","), "--nats-seed", v.seed}
	if h.chainProcess {
		args = append(args, "--eth-rpc", h.ethRPC(), "--eth-key", h.ethKey, "--contract", h.contract)
	} else {
		args = append(args, "--data", h.clearingDir)
	}
	name := fmt.Sprintf("verifier-%d", v.partition)
	p, err := startProc(name, filepath.Join(h.logs, name+".log"), h.cfg.Env, nil, nil, h.cfg.Faregate, args...)
	if err != nil {
		return err
	}
	h.mu.Lock()
	v.p = p
	v.starts++
	h.mu.Unlock()
	return p.waitLog(ctx, "verifier running", 60*time.Second)
}

var forwardedRE = regexp.MustCompile(`verifier stopped.* forwarded=(\d+)`)

// finishPartitions runs while NATS and clearing still run, after the
// outboxes drained: it waits until every verify consumer has nothing left
// to deliver or to have acked, reads each one's delivery count, then stops
// the verifiers (SIGTERM) and reads what the last process of each
// forwarded.
func (h *harness) finishPartitions(ctx context.Context) {
	if len(h.verifiers) == 0 {
		return
	}
	nc, js, err := h.admin()
	if err != nil {
		h.addProblem("the verify consumers: %v", err)
		return
	}
	defer nc.Close()
	h.rep.Partitions = make([]PartitionReport, len(h.verifiers))
	read := func() bool {
		left := false
		for i, v := range h.verifiers {
			pr := &h.rep.Partitions[i]
			pr.Partition, pr.Terminals = v.partition, v.terminals
			c, cancel := context.WithTimeout(ctx, 3*time.Second)
			cons, err := js.Consumer(c, fare.EventStream, clearing.VerifierConsumer(v.partition))
			if err != nil {
				cancel()
				return false
			}
			info, err := cons.Info(c)
			cancel()
			if err != nil {
				return false
			}
			pr.Delivered = info.Delivered.Consumer
			pr.Pending = info.NumPending + uint64(info.NumAckPending)
			left = left || pr.Pending > 0
		}
		return !left
	}
	if !waitUntil(ctx, 30*time.Second, read) {
		for _, pr := range h.rep.Partitions {
			if pr.Pending > 0 || pr.Delivered == 0 {
				h.addProblem("verifier partition %d: %d events left undelivered or unacked in %s, %d delivered, 30 s after the outboxes drained",
					pr.Partition, pr.Pending, clearing.VerifierConsumer(pr.Partition), pr.Delivered)
			}
		}
	}
	for i, v := range h.verifiers {
		h.mu.Lock()
		p := v.p
		h.mu.Unlock()
		if err := p.stop(30 * time.Second); err != nil {
			h.addProblem("verifier %d's stop: %v; log tail:\n%s", v.partition, err, p.log.tail(1500))
		}
		if m := forwardedRE.FindStringSubmatch(p.log.String()); m != nil {
			v.forwarded, _ = strconv.ParseUint(m[1], 10, 64)
		} else {
			h.addProblem("verifier %d did not log what it forwarded when stopped", v.partition)
		}
		pr := &h.rep.Partitions[i]
		pr.Forwarded, pr.Starts = v.forwarded, v.starts
	}
	h.logf("verifiers stopped: %s", h.partitionLine())
}

func (h *harness) partitionLine() string {
	var parts []string
	for _, pr := range h.rep.Partitions {
		parts = append(parts, fmt.Sprintf("p%d delivered %d, last forwarded %d", pr.Partition, pr.Delivered, pr.Forwarded))
	}
	return strings.Join(parts, "; ")
}

// checkPartitions runs after checkStores: every partition carried taps
// (its terminals' events are in clearing's store, its consumer delivered
// them and its last verifier forwarded some), and delivered at least what
// was applied of its terminals (a check of clearing.PartitionOf against the server).
func (h *harness) checkPartitions(bySeq map[string]map[uint64]int) {
	for i := range h.rep.Partitions {
		pr := &h.rep.Partitions[i]
		for _, id := range pr.Terminals {
			pr.Applied += uint64(len(bySeq[id]))
		}
		switch {
		case pr.Applied == 0:
			h.addProblem("verifier partition %d carried no applied tap (terminals %v)", pr.Partition, pr.Terminals)
		case pr.Delivered < pr.Applied:
			h.addProblem("verifier partition %d: verify-%d delivered %d events, clearing applied %d of the terminals the partition hash puts there (%v)",
				pr.Partition, pr.Partition, pr.Delivered, pr.Applied, pr.Terminals)
		}
		if pr.Forwarded == 0 {
			h.addProblem("verifier partition %d: its last verifier process forwarded nothing", pr.Partition)
		}
	}
}
