package clearing_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/clearing/fares/gtfs"
	"github.com/faregate/faregate/fare"
	"github.com/faregate/faregate/ledger"
)

// Clearing child: a real clearing house process (embedded NATS, Badger,
// embedded chain) that tests SIGKILL, or that SIGKILLs itself at a chosen
// point of settlement. It is dispatched from init, before the tests run.
const ledgerCrashEnv = "FAREGATE_TEST_LEDGER_CRASH_CHILD"

// Kill points of the ledger crash child.
const (
	// killAfterSend: right after batch N's commit transaction is sent,
	// before it can be mined.
	killAfterSend = "after-send"
	// killAfterMined: batch N's transaction is sent and mined, its receipt
	// not yet seen by clearing.
	killAfterMined = "after-mined"
	// killBetween: batch N is committed and recorded, batch N+1 not sealed.
	killBetween = "between-batches"
	// killNever: run until SIGTERM, then settle everything and exit.
	killNever = "settle-on-term"
)

type ledgerCrashSpec struct {
	Dir      string        `json:"dir"`
	Registry string        `json:"registry"`
	Port     int           `json:"port"`
	Period   time.Duration `json:"period"`
	Kill     string        `json:"kill"`
	Batch    uint64        `json:"batch"`
	// Feed, if set, is a GTFS feed (directory or zip) clearing prices
	// every tap from live (Config.Feed); the registry's legs apply.
	Feed string `json:"feed,omitempty"`
}

func init() {
	if spec := os.Getenv(ledgerCrashEnv); spec != "" {
		os.Exit(runLedgerCrashChild(spec))
	}
}

func killSelf(why string) {
	fmt.Println("killing:", why)
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {}
}

func runLedgerCrashChild(spec string) int {
	var s ledgerCrashSpec
	if err := json.Unmarshal([]byte(spec), &s); err != nil {
		fmt.Fprintln(os.Stderr, "child spec:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	reg, err := clearing.LoadRegistry(s.Registry)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	var (
		led   *ledger.Embedded
		sends atomic.Uint64
	)
	afterSend := func(tx common.Hash) {
		n := sends.Add(1)
		if n != s.Batch {
			return
		}
		switch s.Kill {
		case killAfterSend:
			killSelf(fmt.Sprintf("batch %d commit %s sent", n, tx))
		case killAfterMined:
			// Wait until the chain holds the batch (a view call, which does
			// not need the commit lock this hook runs under), give the
			// chain's per-block sync time, and die before clearing polls
			// for the receipt.
			for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
				if next, err := led.NextBatchID(context.Background()); err == nil && next > n {
					time.Sleep(200 * time.Millisecond)
					killSelf(fmt.Sprintf("batch %d commit %s mined, receipt not seen", n, tx))
				}
			}
			fmt.Fprintln(os.Stderr, "batch not mined in 20s")
			os.Exit(3)
		}
	}
	led, err = ledger.OpenEmbedded(ctx, filepath.Join(s.Dir, "chain"), ledger.WithLogger(quietLogger()), ledger.WithAfterSend(afterSend))
	if err != nil {
		fmt.Fprintln(os.Stderr, "chain:", err)
		return 2
	}
	defer led.Close()
	if err := clearing.PublishRegistry(ctx, led, reg); err != nil {
		fmt.Fprintln(os.Stderr, "publish registry:", err)
		return 2
	}
	cfg := clearing.Config{
		DataDir: filepath.Join(s.Dir, "clearing"), NATSPort: s.Port, Registry: reg, Ledger: led,
		Period: s.Period, FetchBatch: 64, Logger: quietLogger(), ConfirmKey: testConfirmKey,
	}
	if s.Feed != "" {
		if cfg.Feed, err = gtfs.LoadPath(s.Feed); err != nil {
			fmt.Fprintln(os.Stderr, "feed:", err)
			return 2
		}
		cfg.FeedVersion = "crash-test"
	}
	cl, err := clearing.Open(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "clearing:", err)
		return 2
	}
	defer cl.Close()
	if s.Kill == killBetween {
		go func() {
			for cl.Stats().BatchesCommitted < s.Batch {
				time.Sleep(time.Millisecond)
			}
			killSelf(fmt.Sprintf("batch %d committed and recorded", s.Batch))
		}()
	}
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cl.Run(runCtx) }()
	fmt.Println("ready")
	select {
	case err := <-done:
		cancel()
		fmt.Fprintln(os.Stderr, "run:", err)
		return 1
	case <-ctx.Done():
	}
	// SIGTERM: seal the open period and commit everything, then stop.
	settleCtx, cancelSettle := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancelSettle()
	serr := cl.Settle(settleCtx)
	cancel()
	if err := <-done; err != nil {
		fmt.Fprintln(os.Stderr, "run:", err)
		return 1
	}
	if serr != nil {
		fmt.Fprintln(os.Stderr, "settle:", serr)
		return 1
	}
	fmt.Println("settled")
	return 0
}

// ledgerCrashChild is a running child and what it printed.
type ledgerCrashChild struct {
	cmd   *exec.Cmd
	lines chan string
}

func startLedgerCrashChild(t *testing.T, spec ledgerCrashSpec) *ledgerCrashChild {
	t.Helper()
	b, _ := json.Marshal(spec)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), ledgerCrashEnv+"="+string(b))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &ledgerCrashChild{cmd: cmd, lines: make(chan string, 16)}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			c.lines <- strings.TrimSpace(sc.Text())
		}
		close(c.lines)
	}()
	c.expect(t, "ready", 60*time.Second)
	return c
}

// expect waits for a line starting with prefix and returns it.
func (c *ledgerCrashChild) expect(t *testing.T, prefix string, d time.Duration) string {
	t.Helper()
	timeout := time.After(d)
	for {
		select {
		case l, ok := <-c.lines:
			if !ok {
				t.Fatalf("child exited before printing %q", prefix)
			}
			if strings.HasPrefix(l, prefix) {
				return l
			}
		case <-timeout:
			c.cmd.Process.Kill()
			t.Fatalf("child printed no %q in %s", prefix, d)
		}
	}
}

// auditDir audits the store and chain in dir from this process. The store
// is opened as `faregate ledger audit` opens it: right after a kill -9 that
// means replaying Badger's log.
func auditDir(t *testing.T, dir string, reg *clearing.Registry) *clearing.AuditReport {
	t.Helper()
	st, err := clearing.OpenStoreReadOnly(filepath.Join(dir, "clearing", "store"), quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	led := openLedger(t, filepath.Join(dir, "chain"))
	defer led.Close()
	// Signatures are checked against the chain's registry, which the test's
	// registry file was published to.
	terms := clearing.NewChainTerminals(led)
	if err := terms.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(terms.All()) != len(reg.Terminals) {
		t.Fatalf("chain registry has %d terminals, the registry file %d", len(terms.All()), len(reg.Terminals))
	}
	rep, err := st.Audit(context.Background(), led, clearing.AuditOptions{Terminals: terms})
	if err != nil {
		t.Fatalf("audit: %v", err)
	}
	for _, m := range rep.Mismatches {
		t.Errorf("audit: %s", m)
	}
	return rep
}

// TestLedgerKilledMidCommit SIGKILLs a real clearing process (embedded
// NATS, Badger and chain) at three points of settlement while terminals
// tap: right after a commit transaction is sent, once it is mined but before
// its receipt is seen, and between two batches. After each kill the store
// and the chain must already agree (the batch in flight is pending or on
// chain, never different); after a restart and a final settlement every
// batch id is on chain once, in order, with the store's root and nets, the
// audit is clean and every tap is applied once.
func TestLedgerKilledMidCommit(t *testing.T) {
	const killBatch = 2
	cases := []struct {
		name   string
		kill   string
		period time.Duration
		// after checks the audit taken right after the kill.
		after func(t *testing.T, rep *clearing.AuditReport)
	}{
		{"commit sent, receipt not seen", killAfterSend, 300 * time.Millisecond, func(t *testing.T, rep *clearing.AuditReport) {
			pending, unrecorded := slices.Contains(rep.Pending, killBatch), slices.Contains(rep.Unrecorded, killBatch)
			if pending == unrecorded {
				t.Errorf("batch %d in flight at the kill: pending %v, on chain unrecorded %v; want exactly one", killBatch, pending, unrecorded)
			}
			t.Logf("batch %d after the kill: pending %v (transaction lost with the process), on chain %v", killBatch, pending, unrecorded)
		}},
		{"commit mined, receipt not seen", killAfterMined, 300 * time.Millisecond, func(t *testing.T, rep *clearing.AuditReport) {
			if !slices.Contains(rep.Unrecorded, killBatch) || slices.Contains(rep.Pending, killBatch) {
				t.Errorf("batch %d mined before the kill: unrecorded %v, pending %v; want it on chain, unrecorded", killBatch, rep.Unrecorded, rep.Pending)
			}
		}},
		{"between batches", killBetween, time.Second, func(t *testing.T, rep *clearing.AuditReport) {
			if rep.StoreBatches != killBatch || rep.ChainBatches != killBatch || len(rep.Pending) != 0 || len(rep.Unrecorded) != 0 {
				t.Errorf("after batch %d: %d batches in the store, %d on chain, pending %v, unrecorded %v; want %d, %d, none, none",
					killBatch, rep.StoreBatches, rep.ChainBatches, rep.Pending, rep.Unrecorded, killBatch, killBatch)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			reg, keys := testRegistry(4)
			regFile := filepath.Join(dir, "registry.json")
			if err := reg.Save(regFile); err != nil {
				t.Fatal(err)
			}
			spec := ledgerCrashSpec{Dir: dir, Registry: regFile, Port: freePort(t), Period: c.period, Kill: c.kill, Batch: killBatch}
			child := startLedgerCrashChild(t, spec)
			url := fmt.Sprintf("nats://127.0.0.1:%d", spec.Port)
			var terms []*runningTerminal
			for _, id := range []string{"t1", "t2", "t3", "t4"} {
				terms = append(terms, startTerminal(t, dir, url, reg, keys, id))
			}
			taps := startTapping(t, terms, 5*time.Millisecond)
			defer func() {
				taps.stop()
				for _, rt := range terms {
					rt.stop(t)
				}
			}()

			why := child.expect(t, "killing:", 60*time.Second)
			err := child.cmd.Wait()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Fatalf("child ended with %v, want SIGKILL", err)
			}
			t.Logf("child %s after %d taps", why, taps.count())
			c.after(t, auditDir(t, dir, reg))

			// Restart on the same directories, let the terminals catch up,
			// stop tapping, drain and settle everything.
			spec.Kill = killNever
			child = startLedgerCrashChild(t, spec)
			time.Sleep(500 * time.Millisecond)
			taps.stop()
			for _, rt := range terms {
				waitFor(t, "outbox "+rt.ID()+" drained", 60*time.Second, func() bool { return rt.Pending() == 0 })
			}
			child.cmd.Process.Signal(syscall.SIGTERM)
			child.expect(t, "settled", 90*time.Second)
			if err := child.cmd.Wait(); err != nil {
				t.Fatalf("child after settling: %v", err)
			}

			rep := auditDir(t, dir, reg)
			if len(rep.Pending) != 0 || len(rep.Unrecorded) != 0 || rep.OpenEvents != 0 || uint64(rep.StoreBatches) != rep.ChainBatches || rep.StoreBatches <= killBatch {
				t.Errorf("after settling: %d batches in the store, %d on chain, pending %v, unrecorded %v, %d events unsealed",
					rep.StoreBatches, rep.ChainBatches, rep.Pending, rep.Unrecorded, rep.OpenEvents)
			}
			for i, b := range rep.Batches {
				if b.ID != uint64(i+1) || b.State != clearing.BatchOK || b.ChainRoot != b.ComputedRoot || b.StoreRoot != b.ComputedRoot {
					t.Errorf("batch at position %d: %+v", i+1, b)
				}
			}
			if rep.EventsChecked != taps.count() || rep.SignaturesChecked != taps.count() {
				t.Errorf("batches hold %d events (%d signatures checked), %d tapped", rep.EventsChecked, rep.SignaturesChecked, taps.count())
			}

			st, err := clearing.OpenStoreReadOnly(filepath.Join(dir, "clearing", "store"), quietLogger())
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			ids, err := st.AppliedEventIDs()
			if err != nil {
				t.Fatal(err)
			}
			seen := make(map[fare.EventID]bool, len(ids))
			for _, id := range ids {
				if seen[id] {
					t.Errorf("event %s applied twice", id)
				}
				seen[id] = true
			}
			if uint64(len(ids)) != taps.count() {
				t.Errorf("%d events applied, %d tapped", len(ids), taps.count())
			}
			want := map[string]fare.Amount{}
			for _, rt := range terms {
				if w, _ := st.Watermark(rt.ID()); w != rt.LastSequence() {
					t.Errorf("terminal %s: watermark %d, last sequence %d", rt.ID(), w, rt.LastSequence())
				}
				r, _ := reg.TerminalKey(rt.ID())
				op, _ := reg.Operator(r.Operator)
				want[r.Operator] += op.FlatFare * fare.Amount(rt.LastSequence())
			}
			checkBooks(t, st, want)
			for _, b := range rep.Batches {
				cr, err := st.Commit(b.ID)
				if err != nil {
					t.Errorf("batch %d: no commit record after restart: %v", b.ID, err)
					continue
				}
				// The one the killed run did not record too: the chain
				// says where it went.
				if cr.TxHash == ([32]byte{}) || cr.BlockNumber == 0 || cr.At.IsZero() {
					t.Errorf("batch %d: commit record after restart %+v, want its transaction, block and time", b.ID, cr)
				}
			}
		})
	}
}
