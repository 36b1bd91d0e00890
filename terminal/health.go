package terminal

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// What a device operator watches: is the gate connected, is its outbox
// draining, are its lists current, has it room. Each is read from the
// terminal's state when scraped.

// healthCollectors are the terminal's gauges and the disk-full counter,
// labelled with its id.
func (t *Terminal) healthCollectors() []prometheus.Collector {
	labels := func(kv ...string) prometheus.Labels {
		l := prometheus.Labels{"terminal": t.cfg.ID}
		for i := 0; i+1 < len(kv); i += 2 {
			l[kv[i]] = kv[i+1]
		}
		return l
	}
	gauge := func(name, help string, l prometheus.Labels, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: l}, f)
	}
	b2f := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	return []prometheus.Collector{
		gauge("faregate_terminal_outbox_pending", "Events in the outbox not yet confirmed by clearing.", labels(),
			func() float64 { return float64(t.Pending()) }),
		gauge("faregate_terminal_last_sequence", "The sequence of the last event the gate signed.", labels(),
			func() float64 { return float64(t.LastSequence()) }),
		gauge("faregate_terminal_confirmed_sequence", "The watermark clearing last confirmed (every sequence up to it is applied or rejected).", labels(),
			func() float64 { return float64(t.Confirmed()) }),
		gauge("faregate_terminal_last_confirmation_timestamp_seconds", "When the gate last recorded a confirmation from clearing (Unix seconds; 0: not since it started).", labels(),
			func() float64 {
				if ns := t.confirmedAt.Load(); ns != 0 {
					return float64(ns) / 1e9
				}
				return 0
			}),
		gauge("faregate_terminal_clock_offset_seconds", "How far the gate's clock was ahead of clearing's (negative: behind) at clearing's last answer to its request, within the round trip: clearing holds taps dated more than a day ahead and rejects those more than 30 days back.", labels(),
			func() float64 { return t.ClockOffset().Seconds() }),
		gauge("faregate_terminal_clock_correction_seconds", "How far behind its own clock the gate stamps the taps it times: clearing's clock followed while the gate's is provably off it by more than 2 s and at most 5 minutes (0: its own clock).", labels(),
			func() float64 { return t.ClockCorrection().Seconds() }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "faregate_terminal_events_resigned_total", Help: "The outbox's events signed again under a new sequence because clearing holds another event under theirs (a restored outbox, a second unit with the key).", ConstLabels: labels()},
			func() float64 { return float64(t.Renumbered()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "faregate_terminal_events_rejected_total", Help: "Events clearing rejected for good, kept in the dead-letter store (faregate terminal rejected).", ConstLabels: labels()},
			func() float64 { return float64(t.RejectedEvents()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "faregate_terminal_resend_probes_total", Help: "Resend rounds that sent only the first unconfirmed event, clearing having answered nothing since the last.", ConstLabels: labels()},
			func() float64 { return float64(t.Probes()) }),
		gauge("faregate_terminal_nats_connected", "1 while the gate is connected to NATS.", labels(),
			func() float64 { return b2f(t.natsUp.Load()) }),
		gauge("faregate_terminal_gate_lists_synced", "1 once the deny and enrolment lists were read whole from clearing since the gate started.", labels(),
			func() float64 {
				select {
				case <-t.synced:
					return 1
				default:
					return 0
				}
			}),
		gauge("faregate_terminal_gate_lists_live", "1 while the gate follows both gate lists' feeds from clearing (0: offline, or clearing refuses or does not serve its requests for them; it then decides from its last copy).", labels(),
			func() float64 { return b2f(t.listsLive.Load()) }),
		gauge("faregate_terminal_gate_lists_stale_seconds", "Seconds since the gate last followed both gate lists' feeds (0 while it does; since its start if it has not since): how long its copy may have missed cards clearing listed. Alert on it: an offline gate goes on deciding from its copy.", labels(),
			func() float64 { return t.ListsStale().Seconds() }),
		gauge("faregate_terminal_gate_list_version", "The version of the gate's copy of a clearing list.", labels("list", "deny"),
			func() float64 { v, _ := t.DenyListVersion(); return float64(v) }),
		gauge("faregate_terminal_gate_list_version", "The version of the gate's copy of a clearing list.", labels("list", "enrolment"),
			func() float64 { v, _ := t.EnrolmentVersion(); return float64(v) }),
		gauge("faregate_terminal_disk_free_bytes", "Free space on the outbox's file system (checked at most once a second; -1: it reports none).", labels(),
			func() float64 {
				free, ok := t.room.freeNow(time.Now())
				if !ok {
					return -1
				}
				return float64(free)
			}),
		t.diskRefused,
	}
}

// Ready says whether the gate can take taps now: its outbox has room
// (the network is not needed: the gate decides offline), and its clock was
// within 5 minutes of clearing's at clearing's last answer (taps are
// priced by the time the gate stamps: a clock an hour fast charges an
// evening journey at the peak fare, one a month slow charges nothing),
// and clearing did not reject its newest confirmed tap for the gate's own
// sake (revoked, or set up at another stop or operator than the ledger's:
// every tap it opens for is refused), and its last outbox commit did not
// fail (a disk turned read-only refuses every tap). The error says why
// not.
func (t *Terminal) Ready() error {
	if err := t.room.check(time.Now()); err != nil {
		return err
	}
	if t.rebasing.Load() {
		return errors.New("the outbox's renumbering after clearing's record is unfinished: taps are refused until it is (the log names the entry to give up if one is damaged: faregate terminal give-up)")
	}
	if f := t.commitFault.Load(); f != nil {
		return fmt.Errorf("the outbox's commits fail (since %s, %d failed; the last: %s): taps are refused until one succeeds (a disk turned read-only or failing?)", f.since.UTC().Format(time.RFC3339), f.n.Load(), f.err)
	}
	if why := t.rejectedGate.Load(); why != nil {
		return fmt.Errorf("clearing rejects this gate's taps for good: %s; every tap it opens for is refused (check `faregate ledger status`; the rejected events are in `faregate terminal rejected`)", *why)
	}
	if why := t.publishRefused.Load(); why != nil {
		return fmt.Errorf("NATS refuses this gate's taps: %s", *why)
	}
	if off := t.ClockOffset(); (off > clockWarnAfter || off < -clockWarnAfter) && t.follow.Load() == nil {
		return fmt.Errorf("the gate's clock is %s off clearing's (positive: ahead) at clearing's last answer: taps are priced by the time the gate stamps them, and clearing holds those dated a day ahead and rejects those a month back; set the gate's clock (NTP)", off.Round(time.Second))
	}
	return nil
}
